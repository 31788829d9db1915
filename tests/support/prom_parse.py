"""Parses the Prometheus text format on stdin with prometheus_client's own
parser (the one Prometheus' Python tooling uses) and prints every sample as
a JSON list of [name, labels, value]. Exits 3 when prometheus_client is not
installed, 1 when the text does not parse."""
import json
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit(3)

text = sys.stdin.read()
samples = []
try:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.append([s.name, s.labels, s.value])
except Exception as e:  # the parser raises ValueError and others
    print(f"does not parse: {e}", file=sys.stderr)
    sys.exit(1)
print(json.dumps(samples))
