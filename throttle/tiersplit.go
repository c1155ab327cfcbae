package throttle

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"
)

// The daily tier on a Redis Cluster. A job of a sender with a tier touches its
// contact's P{c:<id>}:rules and its sender's P{s:<sender>}:tier, two slots that one
// script cannot reach there (CROSSSLOT). So on a cluster (Policy.splitTier) the tier is
// decided in two steps, each a script on one slot:
//
//  1. tierScript, on the sender's slot, before the rules: it takes a place for the
//     contact in the tier set (or refuses: the tier is full) and returns the score it
//     wrote and the contact's score before (empty: new in the window).
//  2. ruleSplitScript, on the contact's slot: ruleScript with the tier's answer passed
//     in. Every rule before the tier decides as in ruleScript; the tier's refusal is
//     returned only when nothing before it refused. An allowed job records the place in
//     its s:<sender> record ("score:prev:1:campaign") exactly as ruleScript does, and
//     says that it took the place.
//  3. When the job did not take the place (a rule refused it, or it already held a
//     reservation: a job decided again), tierUndoScript gives the place back.
//
// Exactness rests on one invariant: every place taken writes a score no other pending
// place of that contact has — the clock's ms when the contact's score is older, else
// the score + 1/1024 ms (two reservations of one contact in one ms, or clocks that
// disagree). A place is given back only while the contact's score is still the one it
// wrote, and then to the score it replaced; a later place of the same contact makes the
// give-back a no-op, and that later place recorded the earlier score as its own
// "before". So a give-back never removes or lowers a place another job holds: the set
// can count a contact longer than its messages need (holding the sender back), never
// shorter (never over its tier). Deferral times are whole ms (the fraction truncated).
//
// Between steps 1 and 3 the place is held though the job may not keep it: another job
// of the same sender that finds the tier exactly full then is deferred as if it were
// (never over the tier, sometimes a little early to say no).
//
// A crash between steps 1 and 2 (or before 3) leaks the place: the contact counts as
// messaged at that time although nothing was sent. The leak is bounded: one place per
// job in flight in the crashed process, for at most TierWindow (the place leaves the
// window like any other), and the job itself, handed to another worker when its claim
// lease runs out, finds the contact's place already taken and reuses it (a contact
// counts once whatever its score). So a leak holds the sender below its tier by at most
// the crashed batches' new contacts, for at most 24 h, and never lets it over.
//
// On one Redis primary ruleScript keeps doing it all in one script (one round trip);
// the split costs the cluster one more pipelined round trip per batch, and a third only
// when some place must be given back.

// tierScript takes (ARGV[2] "1") or evaluates ("0") a place for contact ARGV[3] in the
// tier set KEYS[1] (tier ARGV[4], window ARGV[5] ms, now ARGV[1] ms). Returns {state,
// a, b}: state 0 refused (a: when a place frees, ms), 1 taken (a: the score written,
// b: the contact's score before, "" when new in the window), 2 would be allowed
// (evaluation only).
var tierScript = redis.NewScript(`
local now, win = tonumber(ARGV[1]), tonumber(ARGV[5])
local score = redis.call('ZSCORE', KEYS[1], ARGV[3])
if score and tonumber(score) <= now - win then score = false end
if not score then
  local cut = string.format('%d', now - win)
  local since = '(' .. cut
  if redis.call('ZCOUNT', KEYS[1], since, '+inf') >= tonumber(ARGV[4]) then
    local o = redis.call('ZRANGEBYSCORE', KEYS[1], since, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    return {0, string.format('%d', tonumber(o[2]) + win), ''}
  end
  if ARGV[2] ~= '1' then return {2, '', ''} end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cut)
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[3])
  return {1, ARGV[1], ''}
end
if ARGV[2] ~= '1' then return {2, '', score} end
local at = ARGV[1]
if tonumber(score) >= now then at = string.format('%.17g', tonumber(score) + 1 / 1024) end
redis.call('ZADD', KEYS[1], at, ARGV[3])
return {1, at, score}
`)

// tierUndoScript gives back contact ARGV[1]'s place in the tier set KEYS[1] when its
// score is still ARGV[2]: back to ARGV[3], or out of the set when ARGV[3] is empty.
var tierUndoScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then
  if ARGV[3] == '' then redis.call('ZREM', KEYS[1], ARGV[1]) else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
  return 1
end
return 0
`)

// ruleSplitScript is ruleScript for a job counting against a tier on a cluster: KEYS[1]
// only (the contact's rules hash); ARGV 1–12 as ruleScript's, 13 the tier's answer
// ("1" taken, "0" refused, "2" would be allowed), 14 the score taken (or, refused, when
// a place frees), 15 the contact's score before; the caps' pairs from 16. Returns
// ruleScript's {result, until} with a third element: 1 when the job took the tier place
// (keep it), 0 when the caller must give it back.
var ruleSplitScript = redis.NewScript(`
local now, camp, sender = tonumber(ARGV[1]), ARGV[3], ARGV[4]
local fc, fs, fp = 'f:' .. ARGV[7], 's:' .. sender, 'S:' .. sender
local v = redis.call('HMGET', KEYS[1], fc, 'hold', 'b:' .. sender, fs, fp)
local capped, held, log = #ARGV > 15, false, {}
if capped then
  if v[1] then
    for ms, c in string.gmatch(v[1], '(%d+) ([^\n]*)') do
      if c == camp then held = true end
      log[#log + 1] = {tonumber(ms), c}
    end
  end
  if not held then
    for i = 16, #ARGV, 2 do
      local since, n = now - tonumber(ARGV[i + 1]), 0
      for _, e in ipairs(log) do
        if e[1] > since then n = n + 1 end
      end
      if n >= tonumber(ARGV[i]) then return {2, 0, 0} end
    end
  end
end
if ARGV[6] == '1' then return {3, 0, 0} end
if ARGV[8] == '1' and v[2] and tonumber(v[2]) > now then return {4, tonumber(v[2]), 0} end
if v[3] then
  local u = tonumber(string.match(v[3], '^%d+:(%d+)$'))
  if u > now then return {5, u, 0} end
end
local at, mine = '', false
if v[4] then
  local m
  at, m = string.match(v[4], '^([%d.]*):[%d.]*:%d:(.*)$')
  at, mine = at or '', m == camp
end
local pair = tonumber(ARGV[9])
if pair > 0 and at ~= '' and not mine and now < tonumber(at) + pair then return {6, tonumber(at) + pair, 0} end
local tier = tonumber(ARGV[10])
if tier > 0 and not mine and ARGV[13] == '0' then return {7, tonumber(ARGV[14]), 0} end
if ARGV[2] ~= '1' then return {1, 0, 0} end
local set = {}
if capped and not held then
  local longest = 0
  for i = 17, #ARGV, 2 do longest = math.max(longest, tonumber(ARGV[i])) end
  local lines = {}
  for _, e in ipairs(log) do
    if e[1] > now - longest then lines[#lines + 1] = string.format('%d', e[1]) .. ' ' .. e[2] end
  end
  lines[#lines + 1] = ARGV[1] .. ' ' .. camp
  set[#set + 1], set[#set + 2] = fc, table.concat(lines, '\n')
end
local took = 0
if (pair > 0 or tier > 0) and not mine then
  local flag, mark, prev = '0', ARGV[1], ''
  if tier > 0 then flag, mark, prev, took = '1', ARGV[14], ARGV[15], 1 end
  set[#set + 1], set[#set + 2] = fs, mark .. ':' .. prev .. ':' .. flag .. ':' .. camp
  if v[4] then
    set[#set + 1], set[#set + 2] = fp, v[4]
  elseif v[5] then
    redis.call('HDEL', KEYS[1], fp)
  end
end
if #set > 0 then
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('PEXPIRE', KEYS[1], ARGV[12])
end
if held or mine then return {1, 0, took} end
return {1, 1, took}
`)

// releaseSplitScript is releaseScript on the contact's slot only (KEYS[1]): when the
// record it gives back counted against the tier it returns {1, score, score before},
// for tierUndoScript on the sender's slot; else 1 (released) or 0 (nothing held).
var releaseSplitScript = redis.NewScript(`
local camp = ARGV[1]
local fc, fs, fp = 'f:' .. ARGV[4], 's:' .. ARGV[2], 'S:' .. ARGV[2]
local v = redis.call('HMGET', KEYS[1], fc, fs, fp)
if ARGV[4] ~= '' and v[1] then
  local lines, found = {}, false
  for line in string.gmatch(v[1], '[^\n]+') do
    if not found and string.match(line, '^%d+ (.*)$') == camp then found = true else lines[#lines + 1] = line end
  end
  if found and #lines == 0 then
    redis.call('HDEL', KEYS[1], fc)
  elseif found then
    redis.call('HSET', KEYS[1], fc, table.concat(lines, '\n'))
  end
end
if not v[2] then return 0 end
local at, tprev, flag, m = string.match(v[2], '^([%d.]*):([%d.]*):(%d):(.*)$')
if m ~= camp then return 0 end
if v[3] then
  redis.call('HSET', KEYS[1], fs, v[3])
  redis.call('HDEL', KEYS[1], fp)
else
  redis.call('HDEL', KEYS[1], fs)
end
if flag == '1' then return {1, at, tprev} end
return 1
`)

// tierPlace is what tierScript answered for one job.
type tierPlace struct {
	state   int64  // 0 refused, 1 taken, 2 would be allowed; -1 no answer
	a, b    string // see tierScript
	contact uint32
	sender  string
}

// reserveTier runs tierScript for the jobs of calls marked in tiered (their index in
// jobs), in one pipelined round trip, and returns the answers in the same order.
func (p *Policy) reserveTier(ctx context.Context, jobs []Job, tiered []int, nowMs int64, res string) ([]tierPlace, error) {
	calls := make([]scriptCall, len(tiered))
	win := TierWindow.Milliseconds()
	for k, i := range tiered {
		j := &jobs[i]
		calls[k] = scriptCall{keys: []string{p.tierKey(j.SenderID)}, args: []any{nowMs, res, j.ContactID, j.SenderTier, win}}
	}
	cmds, err := runScripts(ctx, p.rdb, tierScript, calls)
	out := make([]tierPlace, len(tiered))
	var bad error
	for k, c := range cmds {
		j := &jobs[tiered[k]]
		out[k] = tierPlace{state: -1, contact: j.ContactID, sender: j.SenderID}
		vals, e := c.Slice()
		if e != nil || len(vals) != 3 {
			bad = errors.Join(bad, e)
			continue
		}
		st, _ := vals[0].(int64)
		a, _ := vals[1].(string)
		b, _ := vals[2].(string)
		out[k] = tierPlace{state: st, a: a, b: b, contact: j.ContactID, sender: j.SenderID}
	}
	if err != nil || bad != nil {
		// Give back the places known to be taken; the others' replies are lost (they may
		// hold a place: see the bound above).
		var undo []tierPlace
		for _, t := range out {
			if t.state == 1 {
				undo = append(undo, t)
			}
		}
		p.undoTier(ctx, undo)
		return nil, errors.Join(err, bad)
	}
	return out, nil
}

// undoTier gives back tier places (tierUndoScript), best effort: a place not given back
// holds the sender back, never over (see the bound above).
func (p *Policy) undoTier(ctx context.Context, places []tierPlace) {
	if len(places) == 0 {
		return
	}
	calls := make([]scriptCall, len(places))
	for k, t := range places {
		calls[k] = scriptCall{keys: []string{p.tierKey(t.sender)}, args: []any{t.contact, t.a, t.b}}
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_, _ = runScripts(rctx, p.rdb, tierUndoScript, calls)
}
