//! Agents: the AI CLIs tasks are dispatched to.

use serde_json::json;

use super::{event, gate, views};
use ops_base::error::{Error, Result};
use ops_base::time::now_ms;
use ops_domain::access::Principal;
use ops_protocol::admin::{AgentList, AgentView};
use ops_store::agents::{self, Agent};
use ops_store::db::Db;

/// The fields of an agent create or edit; `None` keeps (or defaults) them.
#[derive(Default)]
pub struct AgentInput {
    pub slug: Option<String>,
    pub name: Option<String>,
    pub active: Option<bool>,
    pub launch_command: Option<Option<String>>,
    pub model: Option<Option<String>>,
}

/// A slug is what `AGENT_CMD_<SLUG>` is built from: lowercase letters,
/// digits, `-` and `_`.
pub fn check_slug(slug: &str) -> Result<()> {
    let ok = !slug.is_empty()
        && slug.len() <= 64
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "slug",
            "use 1 to 64 lowercase letters, digits, '-' or '_'",
        ))
    }
}

/// `GET /api/agents`.
pub fn list(db: &Db) -> Result<AgentList> {
    let agents: Vec<AgentView> = agents::list(&*db.read()?)?
        .iter()
        .map(views::agent)
        .collect();
    Ok(AgentList {
        total: agents.len() as i64,
        agents,
    })
}

/// `GET /api/agents/:id`.
pub fn get(db: &Db, id: i64) -> Result<AgentView> {
    Ok(views::agent(&agents::require(&*db.read()?, id)?))
}

pub fn create(db: &Db, who: &Principal, input: AgentInput) -> Result<AgentView> {
    who.require_operator("managing agents")?;
    let slug = input
        .slug
        .ok_or_else(|| Error::invalid_field("slug", "is required"))?;
    check_slug(&slug)?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        if agents::by_slug(conn, &slug)?.is_some() {
            return Err(Error::conflict(
                "duplicate",
                format!("an agent with slug {slug:?} exists"),
            ));
        }
        let agent = Agent {
            id: 0,
            name: input.name.unwrap_or_else(|| slug.clone()),
            slug,
            active: input.active.unwrap_or(true),
            launch_command: input.launch_command.flatten(),
            model: input.model.flatten(),
            created_at: now,
            updated_at: now,
        };
        let id = agents::insert(conn, &agent, now)?;
        event(
            conn,
            now,
            None,
            None,
            "agent.created",
            &actor,
            json!({"agent_id": id, "slug": agent.slug}),
        )?;
        agents::require(conn, id)
    })
    .map(|a| views::agent(&a))
}

pub fn edit(db: &Db, who: &Principal, id: i64, input: AgentInput) -> Result<AgentView> {
    who.require_operator("managing agents")?;
    if let Some(slug) = &input.slug {
        check_slug(slug)?;
    }
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        let mut a = agents::require(conn, id)?;
        let before = a.clone();
        if let Some(slug) = input.slug {
            if slug != a.slug && agents::by_slug(conn, &slug)?.is_some() {
                return Err(Error::conflict(
                    "duplicate",
                    format!("an agent with slug {slug:?} exists"),
                ));
            }
            a.slug = slug;
        }
        if let Some(n) = input.name {
            a.name = n;
        }
        if let Some(act) = input.active {
            a.active = act;
        }
        if let Some(c) = input.launch_command {
            a.launch_command = c;
        }
        if let Some(m) = input.model {
            a.model = m;
        }
        agents::save(conn, &a, now)?;
        // What a task of this agent would run changed: the slug picks
        // `AGENT_CMD_<SLUG>` on the worker, the command and model are sent
        // with the claim. Every approval given for the old one lapses.
        let altered: Vec<&str> = [
            ("slug", before.slug != a.slug),
            ("launch_command", before.launch_command != a.launch_command),
            ("model", before.model != a.model),
        ]
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(f, _)| *f)
        .collect();
        let withdrawn = if altered.is_empty() {
            Vec::new()
        } else {
            gate::withdraw_for_agent(
                conn,
                id,
                &format!("agent {:?}: {} changed after approval", before.slug, altered.join(", ")),
                &actor,
                now,
            )?
        };
        event(
            conn,
            now,
            None,
            None,
            "agent.updated",
            &actor,
            json!({"agent_id": id, "slug": a.slug, "active": a.active, "changed": altered, "approvals_withdrawn": withdrawn}),
        )?;
        agents::require(conn, id)
    })
    .map(|a| views::agent(&a))
}

pub fn delete(db: &Db, who: &Principal, id: i64) -> Result<()> {
    who.require_operator("managing agents")?;
    let actor = who.actor();
    db.write(move |conn| {
        let now = now_ms();
        let a = agents::require(conn, id)?;
        let used = agents::task_count(conn, id)?;
        if used > 0 {
            return Err(Error::conflict(
                "agent_in_use",
                format!("agent {:?} is assigned to {used} task(s); deactivate it instead (PATCH active=false)", a.slug),
            ));
        }
        agents::delete(conn, id)?;
        event(conn, now, None, None, "agent.deleted", &actor, json!({"agent_id": id, "slug": a.slug}))
    })
}
