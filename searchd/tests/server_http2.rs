//! Cleartext HTTP/2 (prior knowledge) on the same port as HTTP/1.1.

mod common;

use common::{Server, SnapDir};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper::{Request, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};

#[test]
fn http2_prior_knowledge_is_served() {
    let snaps = SnapDir::new();
    snaps.publish(0);
    let server = Server::start(&snaps.link(), &[]);
    let addr = server.addr;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        // Several streams on one connection, concurrently.
        let mut answers = Vec::new();
        for q in ["jfk", "lon", "kenedy"] {
            let req = Request::builder()
                .uri(format!("http://{addr}/v1/places?q={q}"))
                .header("x-request-id", format!("h2-{q}"))
                .body(Empty::<Bytes>::new())
                .expect("request");
            send.ready().await.expect("ready");
            answers.push((q, send.send_request(req)));
        }
        for (q, fut) in answers {
            let resp = fut.await.expect("response");
            assert_eq!(resp.version(), Version::HTTP_2);
            assert_eq!(resp.status(), 200);
            assert_eq!(
                resp.headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok()),
                Some(format!("h2-{q}").as_str())
            );
            let body = resp.into_body().collect().await.expect("body").to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
            assert!(v["data"][0]["iata"].is_string(), "{v}");
        }
        let req = Request::builder()
            .uri(format!("http://{addr}/nowhere"))
            .body(Empty::<Bytes>::new())
            .expect("request");
        let resp = send.send_request(req).await.expect("response");
        assert_eq!(resp.status(), 404);
    });
}

/// Every GET route also takes HEAD: over HTTP/2 the answer must carry the headers (and the
/// length a GET would have) and no DATA frame, or the client resets the stream.
#[test]
fn head_over_http2_sends_headers_without_a_body() {
    let snaps = SnapDir::new();
    snaps.publish(0);
    let server = Server::start(&snaps.link(), &[]);
    let addr = server.addr;
    let get_len = server.get("/openapi.json").body.len();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .expect("h2 handshake");
        tokio::spawn(conn);
        for (path, len) in [("/openapi.json", Some(get_len)), ("/healthz", None)] {
            let req = Request::builder()
                .method("HEAD")
                .uri(format!("http://{addr}{path}"))
                .body(Empty::<Bytes>::new())
                .expect("request");
            send.ready().await.expect("ready");
            let resp = send
                .send_request(req)
                .await
                .unwrap_or_else(|e| panic!("HEAD {path} over HTTP/2: {e}"));
            assert_eq!(resp.status(), 200, "HEAD {path}");
            if let Some(len) = len {
                assert_eq!(
                    resp.headers()
                        .get("content-length")
                        .and_then(|v| v.to_str().ok()),
                    Some(len.to_string().as_str()),
                    "HEAD {path}: the length of the GET answer"
                );
            }
            let body = resp
                .into_body()
                .collect()
                .await
                .unwrap_or_else(|e| panic!("HEAD {path} over HTTP/2, body: {e}"))
                .to_bytes();
            assert!(body.is_empty(), "HEAD {path}: {} body bytes", body.len());
        }
    });
}
