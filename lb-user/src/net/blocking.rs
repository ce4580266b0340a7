//! [`Net`] for synchronous callers (`xlb realserver`, `xlb doctor`): the one place that owns a
//! private current-thread runtime to drive the netlink connection; every call is the async one,
//! blocked on.
use std::future::Future;
use std::net::IpAddr;

use super::{Interface, LinkState, Net, NetError, Route};

pub struct BlockingNet {
    rt: tokio::runtime::Runtime,
    net: Net,
}

impl BlockingNet {
    /// Opens a netlink connection in the calling thread's network namespace. Must not be called
    /// from inside a tokio runtime (it blocks).
    pub fn connect() -> Result<BlockingNet, NetError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NetError::Runtime)?;
        let net = {
            let _in_rt = rt.enter();
            Net::connect()?
        };
        Ok(BlockingNet { rt, net })
    }

    fn run<'a, F: Future + 'a>(&'a self, call: impl FnOnce(&'a Net) -> F) -> F::Output {
        self.rt.block_on(call(&self.net))
    }

    /// Runs a request of a caller's own (policy rules, route copies of `xlb realserver`) on the
    /// raw rtnetlink handle, blocked on.
    pub fn with_handle<F: Future>(&self, call: impl FnOnce(rtnetlink::Handle) -> F) -> F::Output {
        self.rt.block_on(call(self.net.handle.clone()))
    }

    pub fn link(&self, name: &str) -> Result<Option<LinkState>, NetError> {
        self.run(|n| n.link(name))
    }

    pub fn interface(&self, name: &str) -> Result<Interface, NetError> {
        self.run(|n| n.interface(name))
    }

    pub fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>, NetError> {
        self.run(|n| n.addresses(index))
    }

    pub fn add_host_address(&self, index: u32, ip: IpAddr) -> Result<(), NetError> {
        self.run(|n| n.add_host_address(index, ip))
    }

    pub fn del_address(&self, index: u32, ip: IpAddr) -> Result<(), NetError> {
        self.run(|n| n.del_address(index, ip))
    }

    pub fn route_to(&self, dst: IpAddr) -> Result<Option<Route>, NetError> {
        self.run(|n| n.route_to(dst))
    }
}
