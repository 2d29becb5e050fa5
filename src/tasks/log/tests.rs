use std::collections::BTreeMap;

use chrono::TimeZone;

use super::*;

fn at(second: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, second % 60).unwrap()
}

fn buffer(max_bytes: u64) -> LogBuffer {
    LogBuffer::new(LogLimits::new(max_bytes))
}

/// Applies a batch the way the store does: insert the lines, then drop the range and put
/// the marker in place.
fn apply(stored: &mut BTreeMap<u64, LogLine>, batch: LogBatch) {
    for line in batch.lines {
        assert!(
            stored.insert(line.seq, line).is_none(),
            "a seq was stored twice"
        );
    }
    if let Some(drop) = batch.dropped {
        let gone: Vec<u64> = stored
            .range(drop.marker.seq + 1..drop.until_seq)
            .map(|(s, _)| *s)
            .collect();
        for seq in gone {
            stored.remove(&seq);
        }
        stored.insert(drop.marker.seq, drop.marker);
    }
}

/// Writes `n` lines `line <i>` (ten bytes of text up to 99, 42 accounted bytes each).
fn write_lines(buf: &mut LogBuffer, from: u64, n: u64) {
    for i in from..from + n {
        buf.write(at(0), "STDOUT", format!("line {i:05}"));
    }
}

fn accounted(stored: &BTreeMap<u64, LogLine>) -> u64 {
    stored
        .values()
        .filter(|l| l.level != DROP_LEVEL)
        .map(|l| l.message.len() as u64 + LINE_OVERHEAD)
        .sum()
}

#[test]
fn lines_are_numbered_in_write_order_and_drains_continue_the_numbering() {
    let mut buf = buffer(DEFAULT_MAX_LOG_BYTES);
    write_lines(&mut buf, 1, 3);
    let first = buf.drain();
    write_lines(&mut buf, 4, 2);
    let second = buf.drain();
    let seqs: Vec<u64> = first
        .lines
        .iter()
        .chain(&second.lines)
        .map(|l| l.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3, 4, 5]);
    assert_eq!(second.lines[0].message, "line 00004");
    assert!(first.dropped.is_none() && second.dropped.is_none());
    assert!(buf.drain().is_empty());
}

#[test]
fn a_log_under_the_cap_is_kept_whole() {
    let mut buf = buffer(1024 * 42);
    write_lines(&mut buf, 1, 1024);
    let batch = buf.drain();
    assert_eq!(batch.lines.len(), 1024);
    assert!(batch.dropped.is_none());
}

#[test]
fn a_log_over_the_cap_keeps_head_and_tail_with_their_seqs_and_one_marker() {
    // 4200 bytes: a head of 50 lines (2100 bytes), then a tail of the latest 50 lines.
    let mut stored = BTreeMap::new();
    let mut buf = buffer(4200);
    write_lines(&mut buf, 1, 1000);
    apply(&mut stored, buf.drain());
    let seqs: Vec<u64> = stored.keys().copied().collect();
    let expected: Vec<u64> = (1..=51).chain(951..=1000).collect();
    assert_eq!(seqs, expected);
    for (seq, line) in &stored {
        if *seq != 51 {
            assert_eq!(
                line.message,
                format!("line {seq:05}"),
                "seq {seq} was renumbered"
            );
        }
    }
    assert_eq!(stored[&51].level, DROP_LEVEL);
    assert_eq!(
        stored[&51].message,
        "... 900 line(s), 9000 byte(s) dropped here (seq 51 to 950): this try's log is \
         capped at 4200 bytes (max_log_bytes), keeping its head and its latest lines ..."
    );
    assert!(accounted(&stored) <= 4200);
}

#[test]
fn the_drop_is_reported_again_only_when_it_grows() {
    let mut buf = buffer(4200);
    write_lines(&mut buf, 1, 200);
    let first = buf.drain().dropped.unwrap();
    assert_eq!((first.marker.seq, first.until_seq), (51, 151));
    assert!(buf.drain().dropped.is_none());
    write_lines(&mut buf, 201, 1);
    let grown = buf.drain().dropped.unwrap();
    assert_eq!((grown.marker.seq, grown.until_seq), (51, 152));
    assert!(
        grown
            .marker
            .message
            .starts_with("... 101 line(s), 1010 byte(s)")
    );
}

#[test]
fn the_final_lines_continue_the_numbering_after_a_drop() {
    let mut stored = BTreeMap::new();
    let mut buf = buffer(4200);
    write_lines(&mut buf, 1, 300);
    apply(&mut stored, buf.drain());
    buf.write(at(1), "INFO", "task succeeded".into());
    apply(&mut stored, buf.drain());
    let (last_seq, last) = stored.last_key_value().unwrap();
    assert_eq!((*last_seq, last.message.as_str()), (301, "task succeeded"));
    assert_eq!(stored[&300].message, "line 00300");
}

#[test]
fn the_unflushed_buffer_is_bounded_and_overflow_drops_into_the_middle() {
    let limits = LogLimits {
        max_bytes: 1_000_000,
        pending_max_bytes: 4200,
    };
    let mut buf = LogBuffer::new(limits);
    let mut stored = BTreeMap::new();
    for round in 0..5 {
        write_lines(&mut buf, round * 1000 + 1, 1000);
        assert!(buf.pending_bytes <= 4200, "pending {}", buf.pending_bytes);
        apply(&mut stored, buf.drain());
    }
    // The head closed when the buffer first filled (100 lines); what overflowed later went
    // to the one dropped range; the latest lines are kept.
    let seqs: Vec<u64> = stored.keys().copied().collect();
    assert_eq!(seqs[..101], (1..=101).collect::<Vec<_>>()[..]);
    assert_eq!(stored[&101].level, DROP_LEVEL);
    assert_eq!(*seqs.last().unwrap(), 5000);
    let tail: Vec<u64> = seqs[101..].to_vec();
    assert!(
        tail.windows(2).all(|w| w[1] == w[0] + 1),
        "the tail has a gap"
    );
}

#[test]
fn tail_bookkeeping_is_bounded_by_the_cap_even_for_empty_lines() {
    let mut buf = buffer(4200);
    for _ in 0..100_000 {
        buf.write(at(0), "STDOUT", String::new());
    }
    assert!(buf.tail_sizes.len() as u64 <= 4200 / LINE_OVERHEAD);
    assert!(buf.pending_tail.len() as u64 <= 4200 / LINE_OVERHEAD);
}

#[test]
fn a_line_longer_than_a_quarter_of_the_cap_is_cut_on_a_character_boundary() {
    let mut buf = buffer(4000);
    buf.write(at(0), "STDOUT", "é".repeat(3000));
    let line = &buf.drain().lines[0];
    assert!(line.message.len() <= 1000, "{}", line.message.len());
    assert!(
        line.message.ends_with(" ... [line cut: 6000 bytes]"),
        "{}",
        line.message
    );
}

/// A tiny deterministic generator, so the follow test covers many shapes with no timing.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn a_reader_following_by_seq_never_skips_a_kept_line_nor_sees_a_seq_twice() {
    for seed in 1..40u64 {
        let mut rng = seed * 0x9E37_79B9;
        let limits = LogLimits {
            max_bytes: 3000 + xorshift(&mut rng) % 3000,
            pending_max_bytes: 800 + xorshift(&mut rng) % 3000,
        };
        let mut buf = LogBuffer::new(limits);
        let mut stored: BTreeMap<u64, LogLine> = BTreeMap::new();
        let mut seen: BTreeMap<u64, LogLine> = BTreeMap::new();
        let mut position = 0;
        for _ in 0..60 {
            for _ in 0..xorshift(&mut rng) % 80 {
                let len = (xorshift(&mut rng) % 60) as usize;
                buf.write(at(0), "STDOUT", "x".repeat(len));
            }
            apply(&mut stored, buf.drain());
            // The reader polls at random moments, like a dashboard or an API client.
            if xorshift(&mut rng).is_multiple_of(3) {
                for (seq, line) in stored.range(position + 1..) {
                    assert!(
                        seen.insert(*seq, line.clone()).is_none(),
                        "seq {seq} seen twice"
                    );
                    position = *seq;
                }
            }
        }
        for (seq, line) in stored.range(position + 1..) {
            assert!(
                seen.insert(*seq, line.clone()).is_none(),
                "seq {seq} seen twice"
            );
        }
        for (seq, line) in &stored {
            if line.level != DROP_LEVEL {
                assert_eq!(
                    seen.get(seq),
                    Some(line),
                    "seed {seed}: kept seq {seq} skipped"
                );
            }
        }
        assert!(
            accounted(&stored) <= limits.max_bytes,
            "seed {seed}: over the cap"
        );
        assert!(stored.values().filter(|l| l.level == DROP_LEVEL).count() <= 1);
    }
}
