//! A client connection to the daemon (used by members, the demo and the tests).

use std::io;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::bytes::Bytes;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::group::{Delivery, GroupEndpoint};
use crate::identity::Identity;
use crate::net::auth::{self, Challenge};
use crate::net::wire::{self, ClientMsg, ControlCmd, ServerMsg};

/// One connection to the daemon.
#[derive(Debug)]
pub struct Connection {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
    reassembly: wire::Reassembly,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl Connection {
    /// Connects and joins `group` as `identity`'s member id, proving it with the identity's
    /// key, and waits for the daemon's acknowledgement (so joins made one after another are seen
    /// in that order); a refusal is an error.
    pub async fn join(
        addr: impl ToSocketAddrs,
        group: &str,
        identity: &Identity,
    ) -> io::Result<Self> {
        Self::join_presenting(addr, group, identity, None).await
    }

    /// As [`Self::join`], presenting `certificate` (DER) to a daemon with access rules.
    pub async fn join_presenting(
        addr: impl ToSocketAddrs,
        group: &str,
        identity: &Identity,
        certificate: Option<&[u8]>,
    ) -> io::Result<Self> {
        let (mut c, challenge) = Self::open(addr).await?;
        let proof = auth::prove_join(identity, &challenge, group);
        let join = ClientMsg::Join {
            group: group.into(),
            member: identity.id().into(),
            proof,
            certificate: certificate.map(<[u8]>::to_vec),
        };
        c.send(&join).await?;
        match c.recv().await? {
            Some(ServerMsg::Ok) => Ok(c),
            Some(ServerMsg::Error(e)) => {
                Err(io::Error::other(format!("the daemon refused the join: {e}")))
            }
            Some(other) => Err(invalid(format!("unexpected answer to a join: {other:?}"))),
            None => Err(invalid("the daemon closed the connection")),
        }
    }

    /// Connects and reads the daemon's challenge, without sending anything (the first request,
    /// a join or a command, must answer it).
    pub async fn open(addr: impl ToSocketAddrs) -> io::Result<(Self, Challenge)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut c = Self {
            framed: Framed::new(stream, wire::codec()),
            reassembly: wire::Reassembly::default(),
        };
        match c.recv().await? {
            Some(ServerMsg::Challenge(challenge)) => Ok((c, challenge)),
            Some(ServerMsg::Error(e)) => Err(io::Error::other(format!("the daemon refused: {e}"))),
            Some(other) => Err(invalid(format!("expected a challenge, got {other:?}"))),
            None => Err(invalid("the daemon closed the connection")),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, msg: &ClientMsg) -> io::Result<()> {
        self.framed.send(Bytes::from(wire::encode(msg))).await
    }

    /// Sends raw bytes as one frame (for tests of the daemon's input checks).
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> io::Result<()> {
        self.framed.send(Bytes::from(bytes)).await
    }

    /// The next message from the daemon; `None` once the daemon closed the connection.
    pub async fn recv(&mut self) -> io::Result<Option<ServerMsg>> {
        match self.framed.next().await {
            None => Ok(None),
            Some(frame) => wire::decode(&frame?).map(Some).map_err(invalid),
        }
    }

    /// Sends one fault-injection command, signed by `operator`, on a fresh connection and
    /// returns the answer.
    pub async fn control(
        addr: impl ToSocketAddrs,
        operator: &Identity,
        cmd: ControlCmd,
    ) -> io::Result<ServerMsg> {
        Self::control_presenting(addr, operator, None, cmd).await
    }

    /// As [`Self::control`], presenting the operator's `certificate` (DER).
    pub async fn control_presenting(
        addr: impl ToSocketAddrs,
        operator: &Identity,
        certificate: Option<&[u8]>,
        cmd: ControlCmd,
    ) -> io::Result<ServerMsg> {
        let (mut c, challenge) = Self::open(addr).await?;
        let proof = auth::prove_control(operator, &challenge, &cmd);
        let certificate = certificate.map(<[u8]>::to_vec);
        let msg = ClientMsg::Control { operator: operator.id().into(), cmd, proof, certificate };
        c.send(&msg).await?;
        c.recv().await?.ok_or_else(|| invalid("the daemon closed the control connection"))
    }
}

impl GroupEndpoint for Connection {
    async fn send(&mut self, view_id: u64, to: Option<String>, bytes: Vec<u8>) -> io::Result<()> {
        Self::send(self, &ClientMsg::Send { view_id, to, bytes }).await
    }

    async fn recv(&mut self) -> io::Result<Option<Delivery>> {
        loop {
            match Self::recv(self).await? {
                None => return Ok(None),
                Some(ServerMsg::Error(e)) => {
                    return Err(io::Error::other(format!("the daemon refused: {e}")))
                }
                Some(ServerMsg::Ok) => continue,
                Some(ServerMsg::Challenge(_)) => {
                    return Err(invalid(
                        "a second challenge from the daemon on a joined connection",
                    ))
                }
                Some(other) => {
                    if let Some(d) = self.reassembly.push(other).map_err(invalid)? {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }

    async fn heartbeat(&mut self) -> io::Result<()> {
        Self::send(self, &ClientMsg::Heartbeat).await
    }

    async fn leave(&mut self) -> io::Result<()> {
        Self::send(self, &ClientMsg::Leave).await
    }
}
