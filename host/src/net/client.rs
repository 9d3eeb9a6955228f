//! A client connection to the daemon (used by members, the demo and the tests).

use std::io;

use futures::{SinkExt, StreamExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::bytes::Bytes;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::group::{Delivery, GroupEndpoint};
use crate::net::wire::{self, ClientMsg, ControlCmd, ServerMsg};

/// One connection to the daemon.
#[derive(Debug)]
pub struct Connection {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl Connection {
    /// Connects and joins `group` as `member`, waiting for the daemon's acknowledgement (so
    /// joins made one after another are seen in that order); a refusal is an error.
    pub async fn join(addr: impl ToSocketAddrs, group: &str, member: &str) -> io::Result<Self> {
        let mut c = Self::connect(addr).await?;
        c.send(&ClientMsg::Join { group: group.into(), member: member.into() }).await?;
        match c.recv().await? {
            Some(ServerMsg::Ok) => Ok(c),
            Some(ServerMsg::Error(e)) => {
                Err(io::Error::other(format!("the daemon refused the join: {e}")))
            }
            Some(other) => Err(invalid(format!("unexpected answer to a join: {other:?}"))),
            None => Err(invalid("the daemon closed the connection")),
        }
    }

    async fn connect(addr: impl ToSocketAddrs) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self { framed: Framed::new(stream, wire::codec()) })
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

    /// Sends one fault-injection command on a fresh connection and returns the answer.
    pub async fn control(addr: impl ToSocketAddrs, cmd: ControlCmd) -> io::Result<ServerMsg> {
        let mut c = Self::connect(addr).await?;
        c.send(&ClientMsg::Control(cmd)).await?;
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
                Some(other) => return Ok(Option::from(other)),
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
