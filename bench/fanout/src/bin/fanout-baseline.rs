//! `fanout-baseline ADDR`: the floor for bench/sockets.sh.
//!
//! A minimal broadcast server on the same stack Nubo's gateway uses
//! (tokio, tokio-tungstenite, a tokio broadcast channel): WebSockets on
//! `/ws`, and `GET /probe/ps-pub?chat=N` sends `N` to every one of them,
//! answering like the probe component does. No routing, no apps, no
//! components: what a hand-written single-purpose server costs.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

#[tokio::main]
async fn main() {
    fanout::raise_fd_limit();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3502".into());
    let listener = TcpListener::bind(&addr)
        .await
        .unwrap_or_else(|e| panic!("bind {addr}: {e}"));
    let (tx, _) = broadcast::channel::<String>(1024);
    println!("listening on {addr}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = serve(stream, tx).await;
        });
    }
}

async fn serve(mut stream: TcpStream, tx: broadcast::Sender<String>) -> std::io::Result<()> {
    let _ = stream.set_nodelay(true);
    // Look at the request line without taking it, so a WebSocket
    // handshake still finds the whole request.
    let mut head = [0u8; 64];
    let n = stream.peek(&mut head).await?;
    let line = String::from_utf8_lossy(&head[..n]).into_owned();
    if let Some(rest) = line.strip_prefix("GET /probe/ps-pub?chat=") {
        let value: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            got.extend_from_slice(&buf[..n]);
        }
        let _ = tx.send(value);
        stream
            .write_all(
                b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\npublished",
            )
            .await?;
        return Ok(());
    }
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return Ok(());
    };
    let (mut sink, mut source) = ws.split();
    let mut rx = tx.subscribe();
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Ok(text) => {
                    if sink.send(Message::text(text)).await.is_err() {
                        return Ok(());
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            m = source.next() => match m {
                Some(Ok(_)) => {}
                _ => return Ok(()),
            },
        }
    }
}
