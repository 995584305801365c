//! The timeline's rules, one test each: what is listed, the numbers it gets, and what stays as it
//! was across updates.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::*;
use crate::media::mpegts::Timing;

const SECOND: u64 = 90_000;

/// The wall clock of seq `seq`'s first byte in these tests: one second per seq, plus `micros`.
fn at(seq: u64, micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000 + seq) + Duration::from_micros(micros)
}

/// A complete segment measured as starting at `first_pts` and lasting `ticks`, whose first byte
/// came at `started`.
fn segment(seq: u64, first_pts: u64, ticks: u64, started: SystemTime) -> (u64, Held) {
    let timing = Timing {
        first_pts: Some(first_pts % (1 << 33)),
        duration_ticks: Some(ticks),
        keyframe: Some(true),
    };
    let facts = Facts::new(1000, Some(started), Some(started), Some(timing));
    (seq, Held::Complete(facts))
}

/// A one-second segment whose PTS follow from its seq, moved by `shift` ticks.
fn second(seq: u64, shift: i64) -> (u64, Held) {
    let pts = (seq * SECOND).wrapping_add_signed(shift);
    segment(seq, pts, SECOND, at(seq, 0))
}

fn view(held: Vec<(u64, Held)>) -> View {
    View {
        held,
        ..View::default()
    }
}

/// (seq, msn, dsn, discontinuity) of every listed segment.
fn listed(timeline: &Timeline) -> Vec<(u64, u64, u64, bool)> {
    let entries = timeline.entries().iter();
    entries
        .map(|e| (e.seq, e.msn, e.dsn, e.discontinuity))
        .collect()
}

#[test]
fn continuous_segments_are_listed_with_their_seqs_and_the_window_keeps_the_newest() {
    let mut timeline = Timeline::default();
    // First bytes that came late: the times follow the durations, not the arrivals.
    let held = (3..8)
        .map(|seq| segment(seq, seq * SECOND, SECOND, at(seq, 300_000)))
        .collect();
    timeline.update(&view(held), 3);
    assert_eq!(
        listed(&timeline),
        [(5, 5, 0, false), (6, 6, 0, false), (7, 7, 0, false)]
    );
    assert_eq!(timeline.target_secs(), 1);
    let times: Vec<_> = timeline
        .entries()
        .iter()
        .map(|e| e.program_date_time)
        .collect();
    let first = at(3, 300_000);
    assert_eq!(times, [2, 3, 4].map(|s| first + Duration::from_secs(s)));
    let entry = &timeline.entries()[0];
    assert_eq!((entry.duration_ms, entry.independent), (1000, true));
    let facts = Facts::new(1000, Some(at(5, 300_000)), None, None);
    assert_eq!(Some(entry.tag), version_tag(&facts));
}

#[test]
fn a_window_of_zero_keeps_one_segment() {
    let mut timeline = Timeline::default();
    timeline.update(&view(vec![second(0, 0), second(1, 0)]), 0);
    assert_eq!(listed(&timeline), [(1, 1, 0, false)]);
}

#[test]
fn a_seq_passed_over_makes_a_discontinuity_and_takes_no_number() {
    let unmeasured = Facts::new(1000, Some(at(4, 0)), Some(at(4, 0)), None);
    let passed_over = [
        Held::Failed,
        // Closed before its first byte.
        Held::Complete(Facts::new(0, None, None, None)),
        // Complete, but its timing could not be measured.
        Held::Complete(unmeasured),
    ];
    for passed in passed_over {
        let mut timeline = Timeline::default();
        let held = vec![second(3, 0), (4, passed), second(5, 0), second(6, 0)];
        timeline.update(&view(held), 6);
        assert_eq!(
            listed(&timeline),
            [(3, 3, 0, false), (5, 4, 1, true), (6, 5, 1, false)],
            "{passed:?}"
        );
        // After a discontinuity, the time starts again from the first byte's arrival.
        assert_eq!(timeline.entries()[1].program_date_time, at(5, 0));
    }
    // A seq the ring does not hold is passed over too.
    let mut timeline = Timeline::default();
    timeline.update(&view(vec![second(3, 0), second(5, 0)]), 6);
    assert_eq!(listed(&timeline), [(3, 3, 0, false), (5, 4, 1, true)]);
}

#[test]
fn a_pts_jump_is_a_discontinuity_and_a_small_offset_or_a_wrap_is_not() {
    let mut timeline = Timeline::default();
    let ten = 10 * SECOND as i64;
    let wrap = (1u64 << 33) - SECOND / 2;
    let held = vec![
        second(0, 0),
        second(1, PTS_TOLERANCE), // as far off as tolerated
        second(2, ten),           // jumped ahead
        second(3, ten),           // goes on after the jump
        segment(4, wrap, SECOND, at(4, 0)),
        segment(5, wrap + SECOND, SECOND, at(5, 0)), // across the 33-bit wrap
    ];
    timeline.update(&view(held), 10);
    let discontinuous: Vec<_> = timeline.entries().iter().map(|e| e.discontinuity).collect();
    assert_eq!(discontinuous, [false, false, true, false, true, false]);
    assert_eq!(timeline.entries()[5].dsn, 2);
}

#[test]
fn deciding_stops_at_the_segment_being_written_unless_a_later_one_completed() {
    let mut timeline = Timeline::default();
    let open = |seq| (seq, Held::Open);
    timeline.update(&view(vec![second(0, 0), open(1), open(2)]), 6);
    assert_eq!(listed(&timeline), [(0, 0, 0, false)]);
    // 1 completes: listed after 0, as if it had been there all along.
    timeline.update(&view(vec![second(0, 0), second(1, 0), open(2)]), 6);
    assert_eq!(listed(&timeline), [(0, 0, 0, false), (1, 1, 0, false)]);
    // 2 is still being written when 3 completes (a POST overtaken by the next): passed over. And
    // 0 left the ring.
    let held = vec![second(1, 0), open(2), second(3, 0), open(4)];
    timeline.update(&view(held), 6);
    assert_eq!(listed(&timeline), [(1, 1, 0, false), (3, 2, 1, true)]);
    // For good: completing later does not put it back.
    timeline.update(&view(vec![second(1, 0), second(2, 0), second(3, 0)]), 6);
    assert_eq!(listed(&timeline), [(1, 1, 0, false), (3, 2, 1, true)]);
}

#[test]
fn a_version_that_left_the_ring_takes_the_segments_before_it_along_and_the_target_stays() {
    let mut timeline = Timeline::default();
    let long = segment(0, 0, 5 * SECOND / 2, at(0, 0));
    let late = SECOND as i64 * 3 / 2;
    let held = vec![long, second(1, late), second(2, late)];
    timeline.update(&view(held.clone()), 6);
    assert_eq!(listed(&timeline).len(), 3);
    assert_eq!(timeline.target_secs(), 3);
    // A newer version of 1 (a second POST of the seq): 0 and 1 leave the list, 1 is not listed
    // again (its seq was decided), and the target duration does not shrink.
    let mut held = held;
    held[1] = segment(1, SECOND * 5 / 2, SECOND, at(1, 1));
    timeline.update(&view(held), 6);
    assert_eq!(listed(&timeline), [(2, 2, 0, false)]);
    assert_eq!(timeline.target_secs(), 3);
}

#[test]
fn a_publisher_that_starts_over_goes_on_with_the_next_numbers_after_a_discontinuity() {
    let mut timeline = Timeline::default();
    timeline.update(&view((5..8).map(|s| second(s, 0)).collect()), 6);
    assert_eq!(listed(&timeline).last(), Some(&(7, 7, 0, false)));
    // Restarted at seq 0: the ring dropped the previous run's segments.
    let restarted = |held| View {
        run: 1,
        run_start: 0,
        held,
    };
    let new_run = |seq| segment(seq, 1000 + seq * SECOND, SECOND, at(100 + seq, 0));
    timeline.update(&restarted(vec![new_run(0)]), 6);
    assert_eq!(listed(&timeline), [(0, 8, 1, true)]);
    timeline.update(&restarted(vec![new_run(0), new_run(1)]), 6);
    assert_eq!(listed(&timeline), [(0, 8, 1, true), (1, 9, 1, false)]);
}

#[test]
fn a_timeline_behind_the_ring_goes_on_from_the_oldest_segment_held() {
    let mut timeline = Timeline::default();
    timeline.update(&view(vec![second(0, 0), second(1, 0)]), 6);
    timeline.update(&view(vec![second(5, 0), second(6, 0)]), 6);
    assert_eq!(listed(&timeline), [(5, 2, 1, true), (6, 3, 1, false)]);
}

#[test]
fn extreme_facts_are_listed_or_passed_over_without_a_panic() {
    let mut timeline = Timeline::default();
    let before_1970 = UNIX_EPOCH - Duration::from_secs(1);
    let held = vec![
        segment(0, u64::MAX, u64::MAX, at(0, 0)),
        segment(1, 0, 0, at(1, 0)),
        segment(2, 0, SECOND, before_1970),
        segment(3, 0, SECOND, at(3, 0)),
    ];
    timeline.update(&view(held), 6);
    let seqs: Vec<_> = timeline.entries().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, [0, 3], "no duration, no tag: passed over");
}
