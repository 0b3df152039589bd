//! The messages model behind the P2P layer (`crate::p2p::layer`): the [`Host`] hooks, and the
//! calls P2P changes. A send to a peer known only by identity, with no route from the
//! application's resolver, opens a P2P session and dials its virtual address; status
//! snapshots and `sessionFailed` report the path's real address and Steam's `Relayed` /
//! `Fast` flags instead.

use std::net::SocketAddr;

use super::{Event, Messages, SessionInfo};
use crate::connection::ConnectionState;
use crate::end_reason::End;
use crate::eresult::{send_flags, EResult};
use crate::identity::Identity;
use crate::p2p::layer::{Host, P2pLayer, PathView};
use crate::time::Timestamp;

impl Messages {
    /// Whether a session with `peer` exists, and whether its connection has ended.
    fn session_ended(&self, peer: &Identity) -> Option<bool> {
        let s = self.sessions.get(peer)?;
        Some(self.endpoint.connection(s.conn).is_none_or(|c| c.is_dead()))
    }

    /// The session with `peer` if its connection is at `at`.
    fn conn_at(
        &self,
        peer: &Identity,
        at: SocketAddr,
    ) -> Option<crate::endpoint::ConnectionHandle> {
        let s = self.sessions.get(peer)?;
        let c = self.endpoint.connection(s.conn)?;
        (c.remote() == at).then_some(s.conn)
    }
}

impl Host for Messages {
    fn p2p_incoming(
        &mut self,
        _now: Timestamp,
        _peer: &Identity,
        _at: SocketAddr,
        _to_vport: Option<u32>,
    ) -> Result<(), End> {
        // Every peer may start a session; acceptance gates delivery above, as for a peer
        // that dials our address.
        Ok(())
    }

    fn p2p_failed(&mut self, _now: Timestamp, peer: &Identity, at: SocketAddr, end: &End) {
        if let Some(h) = self.conn_at(peer, at) {
            self.endpoint.fail(h, end.reason, end.debug.clone());
            self.collect_endpoint_events();
        }
    }

    fn p2p_in_use(&self, peer: &Identity, at: SocketAddr) -> bool {
        self.conn_at(peer, at)
            .and_then(|h| self.endpoint.connection(h))
            .is_some_and(|c| !c.is_dead())
    }

    fn rewrite_event(event: &mut Event, route: &dyn Fn(SocketAddr) -> Option<PathView>) {
        if let Event::SessionFailed { remote, .. } | Event::SessionClosed { remote, .. } = event {
            if let Some(v) = route(*remote) {
                *remote = v.remote;
            }
        }
    }
}

impl P2pLayer<Messages> {
    /// [`Messages::send`], reaching a peer known only by identity through P2P when the
    /// application gave no address (`remote`) and no session exists (or, with
    /// `AutoRestartBrokenSession`, the session's connection ended).
    pub fn send(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        remote: Option<SocketAddr>,
        data: &[u8],
        flags: u32,
        channel: i32,
    ) -> EResult {
        let mut remote = remote;
        if remote.is_none() && peer.ip_addr().is_none() && self.is_enabled() {
            let restart = flags & send_flags::AUTO_RESTART_BROKEN_SESSION != 0;
            let open = match self.inner().session_ended(peer) {
                None => true,
                Some(ended) => ended && restart,
            };
            if open {
                match self.open(now, peer, None) {
                    Some(at) => remote = Some(at),
                    None => return EResult::LimitExceeded,
                }
            }
        }
        self.inner_mut()
            .send(now, peer, remote, data, flags, channel)
    }

    /// [`Messages::send_run`]: messages to one peer, the session found once. A peer that
    /// P2P may have to find (no address of its own, none given) goes message by message
    /// through [`P2pLayer::send`].
    pub fn send_run<'d>(
        &mut self,
        now: Timestamp,
        peer: &Identity,
        remote: Option<SocketAddr>,
        messages: impl IntoIterator<Item = (&'d [u8], u32, i32)>,
        mut on_result: impl FnMut(EResult),
    ) {
        if remote.is_none() && peer.ip_addr().is_none() && self.is_enabled() {
            for (data, flags, channel) in messages {
                on_result(self.send(now, peer, remote, data, flags, channel));
            }
        } else {
            self.inner_mut()
                .send_run(now, peer, remote, messages, on_result);
        }
    }

    /// [`Messages::session_infos`], each as [`P2pLayer::session_info`] reports it.
    pub fn session_infos(&self) -> Vec<(Identity, SessionInfo)> {
        let mut all = self.inner().session_infos();
        for (_, info) in &mut all {
            self.apply_path(info);
        }
        all
    }

    /// [`Messages::session_info`] with the P2P path's address and flags, and Steam's
    /// `FindingRoute` while ICE looks.
    pub fn session_info(&self, peer: &Identity) -> Option<SessionInfo> {
        let mut info = self.inner().session_info(peer)?;
        self.apply_path(&mut info);
        Some(info)
    }

    fn apply_path(&self, info: &mut SessionInfo) {
        if let Some(v) = self.path_view(info.remote) {
            info.remote = v.remote;
            info.flags |= v.flags;
            if v.finding_route && info.state == ConnectionState::Connecting {
                info.state = ConnectionState::FindingRoute;
            }
        }
    }
}
