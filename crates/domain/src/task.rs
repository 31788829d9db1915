//! Task statuses and the rules about moving between them.

use ops_base::error::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Status {
    Next,
    Queued,
    Dispatching,
    Doing,
    Review,
    Done,
    Waiting,
}

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Next,
        Status::Queued,
        Status::Dispatching,
        Status::Doing,
        Status::Review,
        Status::Done,
        Status::Waiting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Next => "next",
            Status::Queued => "queued",
            Status::Dispatching => "dispatching",
            Status::Doing => "doing",
            Status::Review => "review",
            Status::Done => "done",
            Status::Waiting => "waiting",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Statuses in which a worker holds a claim on the task.
    pub fn is_claimed(self) -> bool {
        matches!(self, Status::Dispatching | Status::Doing)
    }

    /// Statuses a run can be cancelled in (`POST /api/tasks/:id/cancel`):
    /// waiting for a worker, or held by one.
    pub fn may_be_cancelled(self) -> bool {
        matches!(self, Status::Queued | Status::Dispatching | Status::Doing)
    }

    /// Whether a task in this status may be blocked. A done task never is:
    /// reaching `done` lifts the block (`app::transition`, with the event
    /// `task.unblocked`), and blocking a done task is refused.
    pub fn may_be_blocked(self) -> bool {
        self != Status::Done
    }
}

/// The refusal to block a task in `status` (see [`Status::may_be_blocked`]).
pub fn check_may_block(id: i64, status: Status) -> Result<()> {
    if status.may_be_blocked() {
        return Ok(());
    }
    Err(Error::conflict(
        "task_done",
        format!(
            "task {id} is {}: a done task cannot be blocked; move it to another status first",
            status.as_str()
        ),
    ))
}

/// The refusal to cancel a task in `status` (see [`Status::may_be_cancelled`]).
pub fn check_may_cancel(id: i64, status: Status) -> Result<()> {
    if status.may_be_cancelled() {
        return Ok(());
    }
    Err(Error::conflict(
        "invalid_transition",
        format!(
            "task {id} is {}: only a queued, dispatching or doing task can be cancelled",
            status.as_str()
        ),
    ))
}

/// Where a cancelled task lands: out of the queue and off its worker, not
/// blocked, so that dispatch (or retry) runs it again.
pub const CANCELLED_TO: Status = Status::Waiting;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Execution {
    Manual,
    Interactive,
}

impl Execution {
    pub fn as_str(self) -> &'static str {
        match self {
            Execution::Manual => "manual",
            Execution::Interactive => "interactive",
        }
    }

    pub fn parse(s: &str) -> Option<Execution> {
        match s {
            "manual" => Some(Execution::Manual),
            "interactive" => Some(Execution::Interactive),
            _ => None,
        }
    }
}

/// A status a person (or a script) may set by hand. `queued` is reached
/// only through dispatch (which checks the agent and the Human Gate) and
/// `dispatching` only through a worker's claim.
pub fn check_manual_status(to: Status) -> Result<()> {
    match to {
        Status::Queued => Err(Error::conflict(
            "invalid_transition",
            "a task is queued with POST /api/tasks/:id/dispatch, not by setting its status",
        )),
        Status::Dispatching => Err(Error::conflict(
            "invalid_transition",
            "only a worker's claim (POST /api/dispatch/next) moves a task to dispatching",
        )),
        _ => Ok(()),
    }
}

/// Whether a task is run by an AI agent, and so falls under the done guard.
pub fn is_ai_task(execution: Execution, agent_id: Option<i64>) -> bool {
    execution == Execution::Interactive || agent_id.is_some()
}

/// The done guard: an AI task reaches `done` only with visible output
/// evidence (non-empty `dispatch_output` or an ai-dispatch log comment),
/// unless an allowed caller forces it.
pub fn check_done_guard(ai_task: bool, has_evidence: bool, forced: bool) -> Result<()> {
    if !ai_task || has_evidence || forced {
        return Ok(());
    }
    Err(Error::conflict(
        "done_guard",
        "an AI task cannot be done without visible output evidence (dispatch_output or \
         ai-dispatch log comments); add the evidence, or use ?force=true as admin/service \
         for manual recovery",
    ))
}

/// The author of the log comments written from a worker's output.
pub const DISPATCH_AUTHOR: &str = "ai-dispatch";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("DONE"), None);
    }

    #[test]
    fn only_queued_and_claimed_tasks_can_be_cancelled() {
        for s in Status::ALL {
            let ok = matches!(s, Status::Queued | Status::Dispatching | Status::Doing);
            assert_eq!(check_may_cancel(1, s).is_ok(), ok, "{s:?}");
        }
        assert!(!CANCELLED_TO.may_be_cancelled());
    }

    #[test]
    fn done_guard() {
        assert!(check_done_guard(true, false, false).is_err());
        assert!(check_done_guard(true, true, false).is_ok());
        assert!(check_done_guard(true, false, true).is_ok());
        assert!(check_done_guard(false, false, false).is_ok());
        assert!(is_ai_task(Execution::Manual, Some(1)));
        assert!(is_ai_task(Execution::Interactive, None));
        assert!(!is_ai_task(Execution::Manual, None));
    }
}
