// Package recurring owns recurring campaigns ("schedules"): a campaign template and when
// to run it — a cron expression read in a named IANA zone (DST-exact: a wall time the
// clocks skip runs once when they jump, one they show twice runs once, at its first
// occurrence), or a time of day in each recipient's own zone on some weekdays — with a
// maximum number of runs, an end time, a catch-up window for instants missed while no
// scheduler ran, and an option to leave out the contacts earlier runs reached lately.
//
// Each run is an ordinary dispatcher campaign with the id <schedule>-<yyyymmddThhmm>, its
// own audience snapshot taken when it starts, and its own funnel. The Firer claims each
// instant with one compare-and-set script, so any number of processes may fire schedules
// and each instant runs once; a claimed run stays pending until its campaign is launched,
// so a crash between claim and launch is finished by the next tick (see Firer).
//
// A local-time run ("10:00 in each recipient's zone") starts when that day's time comes
// first on Earth (UTC+14), with its snapshot; its campaign carries quiet hours that hold
// each send (in the delayed set) until the time comes in the recipient's zone, on that
// day, as the throttle reads zones (profile, phone number, country, fallback).
//
// Exclude-reached-within reads who earlier runs sent to from ClickHouse's sent events
// (exact by each send's time, no per-contact state in Redis at any audience size), and
// leaves out everyone an earlier run may still message: the contacts of an unfinished
// run without an outcome, and a run's whole audience while the sink has not stored all
// its sends (after a short wait).
//
// It does not send, evaluate policy or store campaigns: dispatcher does. Redis keys are
// listed on Store.
package recurring
