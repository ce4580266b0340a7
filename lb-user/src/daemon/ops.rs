//! The operator's run-time changes: overrides of real servers (kept in the state file, so they
//! survive reloads and restarts) and zeroing of counters. Each is refused with a clear error for
//! a service or real server the configuration does not have.
use tracing::{info, warn};

use super::Daemon;
use crate::{
    config::Protocol,
    control::Response,
    overlay::{self, OverlayError, RealOverride},
    state,
};

fn refused(e: impl std::fmt::Display) -> Response {
    Response::Error {
        message: e.to_string(),
    }
}

impl Daemon {
    /// `xlb real drain|weight|disable|enable`: sets (or with `None` clears) an override, saves
    /// the overlay, and applies it at once. Nothing changes when the state file cannot be
    /// written (the change would be lost at the next restart).
    pub(super) async fn set_override(
        &mut self,
        service: &str,
        protocol: Option<Protocol>,
        real: &str,
        set: Option<RealOverride>,
    ) -> Response {
        let target = match overlay::resolve(&self.cfg, service, protocol, real) {
            Ok(t) => t,
            Err(e) => return refused(e),
        };
        let mut next = self.overlay.clone();
        let summary = match set {
            Some(what) => {
                next.set(&target, what);
                format!("{} of {}: {what}", target.real, target.service)
            }
            None if next.clear(&target) => {
                format!(
                    "{} of {}: operator override cleared",
                    target.real, target.service
                )
            }
            None => format!("{} of {}: had no override", target.real, target.service),
        };
        if let Err(e) = self.commit_overlay(next).await {
            return refused(e);
        }
        info!(service = %target.service, real = %target.real, "{summary}");
        Response::Done { summary }
    }

    /// `xlb real clear`: every override removed.
    pub(super) async fn clear_overrides(&mut self) -> Response {
        let mut next = self.overlay.clone();
        let n = next.clear_all();
        if let Err(e) = self.commit_overlay(next).await {
            return refused(e);
        }
        let summary = format!("{n} operator override(s) cleared");
        info!("{summary}");
        Response::Done { summary }
    }

    async fn commit_overlay(&mut self, next: overlay::Overlay) -> Result<(), OverlayError> {
        next.save(&self.cfg.global.state_dir)?;
        self.overlay = next;
        self.reconcile().await;
        Ok(())
    }

    /// `xlb ipvsadm -Z [-t VIP:PORT]`: zero the traffic counters.
    pub(super) fn zero(&mut self, service: Option<&str>, protocol: Option<Protocol>) -> Response {
        let addr = match service {
            None => None,
            Some(s) => match overlay::find_service(&self.cfg, s, protocol) {
                Ok(vs) => Some(state::service_addr(vs)),
                Err(e) => return refused(e),
            },
        };
        match self.writer.zero_traffic(addr.as_ref()) {
            Ok(n) => {
                let summary = format!("counters of {n} virtual server(s) zeroed");
                info!("{summary}");
                Response::Done { summary }
            }
            Err(e) => {
                warn!("zeroing counters: {e}");
                refused(e)
            }
        }
    }
}
