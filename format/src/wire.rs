//! The invalidation protocol between bookd (publisher) and searchd nodes (subscribers).
//!
//! One QUIC bidirectional stream per connection, opened by the node. Each direction is a
//! sequence of frames:
//!
//! ```text
//! frame   = length: u32 little endian (1 ..= MAX_FRAME_BYTES) + payload
//! payload = protocol version: u16 little endian + bincode 2 (standard config) of `Message`
//! ```
//!
//! The node sends `Subscribe`; bookd answers with `FullState` chunks or `Updates` replayed
//! from its outbox, then streams `Updates` as bookings commit, `Heartbeat`s when idle and
//! `SnapshotPublished` when a new snapshot is in service.
//!
//! Values are absolute (seats remaining, never deltas) and carry the outbox sequence number
//! of the change, so applying an entry twice changes nothing. `Updates { from_seq, to_seq }`
//! covers every change with `from_seq <= seq <= to_seq` (the outbox may have holes: a seq
//! with no entry means no change); a node that has applied everything up to `L` accepts it
//! when `from_seq <= L + 1` and detects a gap otherwise.
//!
//! History tokens (version 2): a seq alone does not say which outbox it belongs to. When
//! bookd's database is restored from a backup, or a failover loses its newest commits, the
//! outbox goes on from an older head and the same seqs name other changes. Every outbox row
//! carries a random, non-zero `token` drawn once per transaction that numbered it (0 for rows
//! written before version 2: one common history), so the same seq in two histories has
//! different tokens. "The token at `S`" is the token of the newest outbox row with
//! `seq <= S` (0 when there is none): `Updates` carry the token at `to_seq`, `FullState` the
//! token at `as_of_seq`, and a node subscribes with the token at its `last_applied_seq`.
//! bookd replays only when the token at that seq in its own outbox is the node's; otherwise
//! (or when it no longer knows it) the node gets a full state.
//!
//! Decoding never panics: an unknown version, a malformed payload, trailing bytes, a frame
//! over the size limit or a batch over the entry limit is a [`WireError`].

use bincode::{Decode, Encode};

/// Version of the protocol this build speaks; frames of any other version are refused.
pub const PROTOCOL_VERSION: u16 = 2;
/// Largest payload of one frame (the length prefix not included).
pub const MAX_FRAME_BYTES: usize = 1 << 20;
/// Most entries in one `Updates` or `FullState` chunk. An encoded entry is at most 24
/// bytes, so a full batch stays far below `MAX_FRAME_BYTES`.
pub const MAX_BATCH: usize = 16_384;
/// Longest node name (names are `[a-z0-9-]`, 1 to 64 characters).
pub const MAX_NAME_LEN: usize = 64;
/// Longest snapshot id.
pub const MAX_SNAPSHOT_ID_LEN: usize = 256;
/// Most chunks one `FullState` may announce (`MAX_CHUNKS * MAX_BATCH` entries at most).
pub const MAX_CHUNKS: u32 = 65_536;
/// ALPN protocol name of the channel.
pub const ALPN: &[u8] = b"flight-inval/2";

/// One booking class on one dated leg: the leg of `carrier` `flight_number` departing
/// `origin` on local date `date` (days since 1970-01-01, as in `format::date`).
#[derive(Encode, Decode, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegKey {
    /// Space padded carrier code, as in the snapshot (`b"BA "`).
    pub carrier: [u8; 3],
    pub flight_number: u16,
    pub date: i32,
    pub origin: [u8; 3],
    pub booking_class: u8,
}

/// Seats remaining in one booking class of one dated leg, as of outbox sequence `seq`.
#[derive(Encode, Decode, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Entry {
    pub key: LegKey,
    pub seats: u16,
    pub seq: u64,
}

/// node -> bookd: start (or restart) the stream.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub node: String,
    /// Everything up to this sequence number is applied (0: nothing, a new node).
    pub last_applied_seq: u64,
    /// The token at `last_applied_seq` as the node was told it (the `to_token` or
    /// `as_of_token` that brought it there; 0 when none).
    pub last_applied_token: u64,
    /// The snapshot id the node's state was sent under (empty when none).
    pub snapshot_id: String,
}

/// bookd -> node: every change with `from_seq <= seq <= to_seq`, in sequence order.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct Updates {
    pub from_seq: u64,
    pub to_seq: u64,
    /// The token of the newest outbox row with `seq <= to_seq`.
    pub to_token: u64,
    pub entries: Vec<Entry>,
}

/// bookd -> node: one chunk of the whole inventory as of `as_of_seq`. Chunks
/// `0..total_chunks` are sent in order with nothing in between; the node replaces its
/// state with their union when the last one arrives.
#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub struct FullState {
    pub as_of_seq: u64,
    /// The token of the newest outbox row with `seq <= as_of_seq`.
    pub as_of_token: u64,
    pub snapshot_id: String,
    pub chunk: u32,
    pub total_chunks: u32,
    pub entries: Vec<Entry>,
}

#[derive(Encode, Decode, Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Subscribe(Subscribe),
    Updates(Updates),
    FullState(FullState),
    /// A new snapshot is in service: nodes reload theirs.
    SnapshotPublished {
        snapshot_id: String,
    },
    /// bookd is alive; `seq` is its newest committed sequence number (a node's lag is
    /// `seq` minus its last applied one), `time_unix_ms` its clock.
    Heartbeat {
        seq: u64,
        time_unix_ms: u64,
    },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Subscribe(_) => "subscribe",
            Message::Updates(_) => "updates",
            Message::FullState(_) => "full_state",
            Message::SnapshotPublished { .. } => "snapshot_published",
            Message::Heartbeat { .. } => "heartbeat",
        }
    }
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    Oversized { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
    #[error("frame too short for a protocol version ({len} bytes)")]
    Truncated { len: usize },
    #[error("protocol version {got}, this build speaks version {PROTOCOL_VERSION}")]
    UnknownVersion { got: u16 },
    #[error("malformed frame: {0}")]
    Malformed(String),
    #[error("malformed frame: {trailing} bytes after the message")]
    TrailingBytes { trailing: usize },
    #[error("{what}: {got} exceeds the limit of {max}")]
    Limit {
        what: &'static str,
        got: usize,
        max: usize,
    },
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_FRAME_BYTES>()
}

/// Checks the limits and invariants a message must respect (both when encoding and
/// decoding).
pub fn validate(msg: &Message) -> Result<(), WireError> {
    let limit = |what: &'static str, got: usize, max: usize| {
        if got > max {
            Err(WireError::Limit { what, got, max })
        } else {
            Ok(())
        }
    };
    match msg {
        Message::Subscribe(s) => {
            limit("node name length", s.node.len(), MAX_NAME_LEN)?;
            limit(
                "snapshot id length",
                s.snapshot_id.len(),
                MAX_SNAPSHOT_ID_LEN,
            )?;
        }
        Message::Updates(u) => {
            limit("entries in one batch", u.entries.len(), MAX_BATCH)?;
            if u.from_seq > u.to_seq {
                return Err(WireError::Invalid(format!(
                    "updates from_seq {} after to_seq {}",
                    u.from_seq, u.to_seq
                )));
            }
            let mut prev = u.from_seq;
            for e in &u.entries {
                if e.seq < prev || e.seq > u.to_seq {
                    return Err(WireError::Invalid(format!(
                        "entry seq {} out of order or outside {}..={}",
                        e.seq, u.from_seq, u.to_seq
                    )));
                }
                prev = e.seq;
            }
        }
        Message::FullState(f) => {
            limit("entries in one batch", f.entries.len(), MAX_BATCH)?;
            limit(
                "snapshot id length",
                f.snapshot_id.len(),
                MAX_SNAPSHOT_ID_LEN,
            )?;
            limit(
                "full state chunks",
                f.total_chunks as usize,
                MAX_CHUNKS as usize,
            )?;
            if f.total_chunks == 0 || f.chunk >= f.total_chunks {
                return Err(WireError::Invalid(format!(
                    "full state chunk {} of {}",
                    f.chunk, f.total_chunks
                )));
            }
            if let Some(e) = f.entries.iter().find(|e| e.seq > f.as_of_seq) {
                return Err(WireError::Invalid(format!(
                    "full state entry seq {} after as_of_seq {}",
                    e.seq, f.as_of_seq
                )));
            }
        }
        Message::SnapshotPublished { snapshot_id } => {
            limit("snapshot id length", snapshot_id.len(), MAX_SNAPSHOT_ID_LEN)?;
        }
        Message::Heartbeat { .. } => {}
    }
    Ok(())
}

/// Encodes one frame: length prefix, version, message.
pub fn encode_frame(msg: &Message) -> Result<Vec<u8>, WireError> {
    validate(msg)?;
    let body =
        bincode::encode_to_vec(msg, config()).map_err(|e| WireError::Encode(e.to_string()))?;
    let payload_len = body.len() + 2;
    if payload_len > MAX_FRAME_BYTES {
        return Err(WireError::Oversized {
            len: payload_len,
            max: MAX_FRAME_BYTES,
        });
    }
    let mut out = Vec::with_capacity(4 + payload_len);
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// The payload length announced by a length prefix, refused when empty or over the limit.
pub fn frame_len(prefix: [u8; 4]) -> Result<usize, WireError> {
    let len = u32::from_le_bytes(prefix) as usize;
    if len == 0 {
        return Err(WireError::Empty);
    }
    if len > MAX_FRAME_BYTES {
        return Err(WireError::Oversized {
            len,
            max: MAX_FRAME_BYTES,
        });
    }
    Ok(len)
}

/// Decodes one payload (the bytes after the length prefix).
pub fn decode_payload(payload: &[u8]) -> Result<Message, WireError> {
    if payload.len() > MAX_FRAME_BYTES {
        return Err(WireError::Oversized {
            len: payload.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    if payload.is_empty() {
        return Err(WireError::Empty);
    }
    let (version, body) = match payload {
        [a, b, rest @ ..] => (u16::from_le_bytes([*a, *b]), rest),
        _ => return Err(WireError::Truncated { len: payload.len() }),
    };
    if version != PROTOCOL_VERSION {
        return Err(WireError::UnknownVersion { got: version });
    }
    let (msg, used): (Message, usize) = bincode::decode_from_slice(body, config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != body.len() {
        return Err(WireError::TrailingBytes {
            trailing: body.len() - used,
        });
    }
    validate(&msg)?;
    Ok(msg)
}

/// Decodes one whole frame (length prefix included); the prefix must match the length.
pub fn decode_frame(frame: &[u8]) -> Result<Message, WireError> {
    let (prefix, payload) = match frame {
        [a, b, c, d, rest @ ..] => ([*a, *b, *c, *d], rest),
        _ => return Err(WireError::Truncated { len: frame.len() }),
    };
    let len = frame_len(prefix)?;
    if len != payload.len() {
        return Err(WireError::Malformed(format!(
            "length prefix says {len} bytes, the frame has {}",
            payload.len()
        )));
    }
    decode_payload(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u32) -> LegKey {
        LegKey {
            carrier: *b"BA ",
            flight_number: (i % 9000) as u16,
            date: 20_000 + (i % 300) as i32,
            origin: *b"LHR",
            booking_class: b'A' + (i % 26) as u8,
        }
    }

    fn roundtrip(msg: Message) {
        let frame = encode_frame(&msg).expect("encodes");
        assert_eq!(decode_frame(&frame).expect("decodes"), msg);
    }

    #[test]
    fn every_message_roundtrips() {
        roundtrip(Message::Subscribe(Subscribe {
            node: "search-1".into(),
            last_applied_seq: 42,
            last_applied_token: 0x8000_0000_0000_0001,
            snapshot_id: "snap-7".into(),
        }));
        roundtrip(Message::Updates(Updates {
            from_seq: 5,
            to_seq: 9,
            to_token: u64::MAX,
            entries: (5..=9)
                .map(|s| Entry {
                    key: key(s as u32),
                    seats: s as u16,
                    seq: s,
                })
                .collect(),
        }));
        roundtrip(Message::FullState(FullState {
            as_of_seq: 100,
            as_of_token: 7,
            snapshot_id: "x".into(),
            chunk: 1,
            total_chunks: 3,
            entries: vec![Entry {
                key: key(1),
                seats: 0,
                seq: 99,
            }],
        }));
        roundtrip(Message::SnapshotPublished {
            snapshot_id: "abc".into(),
        });
        roundtrip(Message::Heartbeat {
            seq: u64::MAX,
            time_unix_ms: 1,
        });
    }

    #[test]
    fn a_full_batch_fits_in_a_frame() {
        let entries: Vec<Entry> = (0..MAX_BATCH as u64)
            .map(|s| Entry {
                key: LegKey {
                    carrier: [0xff; 3],
                    flight_number: u16::MAX,
                    date: i32::MIN,
                    origin: [0xff; 3],
                    booking_class: 0xff,
                },
                seats: u16::MAX,
                seq: u64::MAX - MAX_BATCH as u64 + s,
            })
            .collect();
        let msg = Message::Updates(Updates {
            from_seq: entries[0].seq,
            to_seq: u64::MAX,
            to_token: u64::MAX,
            entries,
        });
        let frame = encode_frame(&msg).expect("a full batch encodes");
        assert!(frame.len() <= MAX_FRAME_BYTES + 4);
        assert_eq!(decode_frame(&frame).expect("decodes"), msg);
    }

    #[test]
    fn over_limit_batches_are_refused_both_ways() {
        let entries: Vec<Entry> = (0..=MAX_BATCH as u64)
            .map(|s| Entry {
                key: key(s as u32),
                seats: 1,
                seq: s + 1,
            })
            .collect();
        let msg = Message::Updates(Updates {
            from_seq: 1,
            to_seq: MAX_BATCH as u64 + 1,
            to_token: 1,
            entries,
        });
        assert!(matches!(encode_frame(&msg), Err(WireError::Limit { .. })));
        // Hand-encoded past the encoder's check: the decoder refuses it too.
        let body = bincode::encode_to_vec(&msg, bincode::config::standard()).expect("encodes");
        let mut payload = PROTOCOL_VERSION.to_le_bytes().to_vec();
        payload.extend_from_slice(&body);
        assert!(matches!(
            decode_payload(&payload),
            Err(WireError::Limit { .. })
        ));
    }

    #[test]
    fn unknown_version_is_refused() {
        let mut frame = encode_frame(&Message::Heartbeat {
            seq: 1,
            time_unix_ms: 2,
        })
        .expect("encodes");
        frame[4] = 3;
        assert_eq!(
            decode_frame(&frame),
            Err(WireError::UnknownVersion { got: 3 })
        );
    }

    #[test]
    fn oversized_and_empty_prefixes_are_refused() {
        assert!(matches!(
            frame_len(((MAX_FRAME_BYTES + 1) as u32).to_le_bytes()),
            Err(WireError::Oversized { .. })
        ));
        assert!(matches!(
            frame_len(u32::MAX.to_le_bytes()),
            Err(WireError::Oversized { .. })
        ));
        assert_eq!(frame_len([0; 4]), Err(WireError::Empty));
        assert_eq!(frame_len(10u32.to_le_bytes()), Ok(10));
        assert!(decode_payload(&vec![0u8; MAX_FRAME_BYTES + 1]).is_err());
    }

    #[test]
    fn trailing_bytes_and_truncation_are_refused() {
        let mut frame = encode_frame(&Message::SnapshotPublished {
            snapshot_id: "s".into(),
        })
        .expect("encodes");
        frame.push(0);
        assert!(decode_frame(&frame).is_err());
        let len = (frame.len() - 4) as u32;
        frame[..4].copy_from_slice(&len.to_le_bytes());
        assert!(matches!(
            decode_frame(&frame),
            Err(WireError::TrailingBytes { trailing: 1 })
        ));
        let good = encode_frame(&Message::Heartbeat {
            seq: 300,
            time_unix_ms: 400,
        })
        .expect("encodes");
        for cut in 0..good.len() {
            assert!(decode_frame(&good[..cut]).is_err(), "cut at {cut}");
            let payload = &good[4..cut.max(4)];
            assert!(decode_payload(payload).is_err(), "payload cut at {cut}");
        }
    }

    #[test]
    fn inconsistent_messages_are_refused() {
        let bad = [
            Message::Updates(Updates {
                from_seq: 5,
                to_seq: 4,
                to_token: 1,
                entries: vec![],
            }),
            Message::Updates(Updates {
                from_seq: 5,
                to_seq: 9,
                to_token: 1,
                entries: vec![Entry {
                    key: key(0),
                    seats: 1,
                    seq: 10,
                }],
            }),
            Message::FullState(FullState {
                as_of_seq: 5,
                as_of_token: 1,
                snapshot_id: String::new(),
                chunk: 0,
                total_chunks: 0,
                entries: vec![],
            }),
            Message::Subscribe(Subscribe {
                node: "n".repeat(MAX_NAME_LEN + 1),
                last_applied_seq: 0,
                last_applied_token: 0,
                snapshot_id: String::new(),
            }),
        ];
        for m in bad {
            assert!(encode_frame(&m).is_err(), "{m:?}");
        }
    }

    /// A small deterministic generator (no dependency needed for fuzz-ish input).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut rng = Rng(7);
        for round in 0..20_000u32 {
            let len = (rng.next() % 300) as usize;
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if round.is_multiple_of(2) && bytes.len() >= 2 {
                // Mostly valid versions, so the bincode decoder itself is exercised.
                bytes[..2].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
            }
            let _ = decode_payload(&bytes);
            let _ = decode_frame(&bytes);
        }
    }

    #[test]
    fn mutated_valid_frames_never_panic() {
        let mut rng = Rng(11);
        let msg = Message::Updates(Updates {
            from_seq: 1,
            to_seq: 40,
            to_token: 0x1234_5678_9abc_def0,
            entries: (1..=40)
                .map(|s| Entry {
                    key: key(s as u32),
                    seats: s as u16,
                    seq: s,
                })
                .collect(),
        });
        let frame = encode_frame(&msg).expect("encodes");
        for _ in 0..20_000 {
            let mut f = frame.clone();
            for _ in 0..(1 + rng.next() % 4) {
                let i = (rng.next() as usize) % f.len();
                f[i] = rng.next() as u8;
            }
            if rng.next().is_multiple_of(4) {
                let cut = (rng.next() as usize) % f.len();
                f.truncate(cut);
            }
            let _ = decode_frame(&f);
            if f.len() > 4 {
                let _ = decode_payload(&f[4..]);
            }
        }
    }
}
/// Frames of protocol version 1 as this build's first release wrote them. Version 2 added
/// the history tokens (`Subscribe`, `Updates` and `FullState` changed shape), so a v1 frame
/// must be refused whole, with an error naming both versions, never decoded into a v2
/// message: a node and bookd of different versions (a rolling upgrade) do not exchange
/// state. (They do not even connect: the ALPN names the version too.)
#[cfg(test)]
mod golden_v1 {
    use super::golden_v2::unhex;
    use super::*;

    /// (message kind, frame) as version 1 encoded them.
    const FRAMES: [(&str, &str); 5] = [
        (
            "subscribe",
            "1e000000010000087365617263682d312a1033633837303039313935666439656437",
        ),
        (
            "updates",
            "2c000000010001fb2c01fb2d0102585820fbcf03fb2c6552554e5900fb2c0142412075fb88a04c48524afbfffffb2d01",
        ),
        (
            "full_state",
            "1f000000010002fd000000000001000000020301585820fb0f270143444746fbfb0007",
        ),
        (
            "snapshot_published",
            "140000000100031061653635303536353130656131653033",
        ),
        ("heartbeat", "0d00000001000400fde3510f17a2010000"),
    ];

    #[test]
    fn version_1_frames_are_refused_naming_both_versions() {
        assert_eq!(
            PROTOCOL_VERSION, 2,
            "the frames below are of an older version"
        );
        for (kind, frame) in FRAMES {
            let bytes = unhex(frame);
            let err = decode_frame(&bytes).expect_err(kind);
            assert_eq!(
                err,
                WireError::UnknownVersion { got: 1 },
                "the v1 {kind} frame"
            );
            let text = err.to_string();
            assert!(
                text.contains("version 1") && text.contains("version 2"),
                "the v1 {kind} frame: {text}"
            );
            assert_eq!(
                decode_payload(&bytes[4..]),
                Err(WireError::UnknownVersion { got: 1 }),
                "the v1 {kind} payload"
            );
        }
    }
}

/// Frames of protocol version 2 as this build's first release wrote them. A build that
/// encodes or decodes them differently without bumping [`PROTOCOL_VERSION`] would corrupt
/// the state of every node running the other build during a rolling upgrade.
#[cfg(test)]
mod golden_v2 {
    use super::*;

    fn leg(
        carrier: &[u8; 3],
        flight_number: u16,
        date: i32,
        origin: &[u8; 3],
        class: u8,
    ) -> LegKey {
        LegKey {
            carrier: *carrier,
            flight_number,
            date,
            origin: *origin,
            booking_class: class,
        }
    }

    fn frames() -> Vec<(Message, &'static str)> {
        vec![
            (
                Message::Subscribe(Subscribe {
                    node: "search-1".into(),
                    last_applied_seq: 42,
                    last_applied_token: 0x9e37_79b9_7f4a_7c15,
                    snapshot_id: "3c87009195fd9ed7".into(),
                }),
                "27000000020000087365617263682d312afd157c4a7fb979379e1033633837303039313935666439656437",
            ),
            (
                Message::Subscribe(Subscribe {
                    node: "n2".into(),
                    last_applied_seq: 0,
                    last_applied_token: 0,
                    snapshot_id: String::new(),
                }),
                "09000000020000026e32000000",
            ),
            (
                Message::Updates(Updates {
                    from_seq: 300,
                    to_seq: 301,
                    to_token: 0x0123_4567_89ab_cdef,
                    entries: vec![
                        Entry {
                            key: leg(b"XX ", 975, 12_950, b"RUN", b'Y'),
                            seats: 0,
                            seq: 300,
                        },
                        Entry {
                            key: leg(b"BA ", 117, 20_548, b"LHR", b'J'),
                            seats: 65_535,
                            seq: 301,
                        },
                    ],
                }),
                "35000000020001fb2c01fb2d01fdefcdab896745230102585820fbcf03fb2c6552554e5900fb2c0142412075fb88a04c48524afbfffffb2d01",
            ),
            (
                Message::FullState(FullState {
                    as_of_seq: 1 << 40,
                    as_of_token: 0,
                    snapshot_id: String::new(),
                    chunk: 2,
                    total_chunks: 3,
                    entries: vec![Entry {
                        key: leg(b"XX ", 9999, -1, b"CDG", b'F'),
                        seats: 251,
                        seq: 7,
                    }],
                }),
                "20000000020002fd00000000000100000000020301585820fb0f270143444746fbfb0007",
            ),
            (
                Message::FullState(FullState {
                    as_of_seq: 5,
                    as_of_token: 250,
                    snapshot_id: "ae65056510ea1e03".into(),
                    chunk: 0,
                    total_chunks: 1,
                    entries: vec![],
                }),
                "1900000002000205fa1061653635303536353130656131653033000100",
            ),
            (
                Message::SnapshotPublished {
                    snapshot_id: "ae65056510ea1e03".into(),
                },
                "140000000200031061653635303536353130656131653033",
            ),
            (
                Message::Heartbeat {
                    seq: 0,
                    time_unix_ms: 1_795_683_209_699,
                },
                "0d00000002000400fde3510f17a2010000",
            ),
        ]
    }

    pub(super) fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(super) fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digits"))
            .collect()
    }

    #[test]
    fn version_2_frames_decode_and_encode_byte_for_byte() {
        assert_eq!(
            PROTOCOL_VERSION, 2,
            "a new version gets golden frames of its own"
        );
        for (msg, frame) in frames() {
            let bytes = unhex(frame);
            assert_eq!(
                decode_frame(&bytes).as_ref(),
                Ok(&msg),
                "decoding the v2 {} frame",
                msg.kind()
            );
            let encoded = encode_frame(&msg).expect("encodes");
            assert_eq!(hex(&encoded), frame, "encoding the v2 {} frame", msg.kind());
        }
    }
}
