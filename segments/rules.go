package segments

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/RoaringBitmap/roaring/v2"
	"gopkg.in/yaml.v3"
)

// Rule is a tag whose members a query over the analytics store selects, e.g. vip =
// "orders in the last 90 days ≥ 2 and click rate ≥ 25%", or tier_a / tier_b / tier_c by
// engagement score.
type Rule struct {
	Tag         string `yaml:"tag" json:"tag"`
	Description string `yaml:"description" json:"description,omitempty"`
	// Query is a read-only SQL query (SELECT or WITH) returning one column of contact ids.
	Query string `yaml:"query" json:"query"`
}

// RuleFile is a set of rules, as YAML:
//
//	rules:
//	  - tag: vip
//	    description: two orders in 90 days and a click rate of 25% or more
//	    query: SELECT contact_id FROM ... GROUP BY contact_id HAVING ...
type RuleFile struct {
	Rules []Rule `yaml:"rules" json:"rules"`
}

// ParseRules reads and checks a rule file: known keys only, each tag valid and given
// once, each query a single read-only statement.
func ParseRules(r io.Reader) (RuleFile, error) {
	var rf RuleFile
	b, err := io.ReadAll(io.LimitReader(r, 1<<20+1))
	if err != nil {
		return rf, fmt.Errorf("read rules: %w", err)
	}
	if len(b) > 1<<20 {
		return rf, errors.New("rules: the file is larger than 1 MiB")
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		if errors.Is(err, io.EOF) {
			return rf, errors.New("rules: the file is empty: it needs a list under rules:")
		}
		return rf, fmt.Errorf("rules: %w", err)
	}
	if len(rf.Rules) == 0 {
		return rf, errors.New("rules: no rules: give a list under rules: with tag and query")
	}
	seen := map[string]int{}
	for i := range rf.Rules {
		r := &rf.Rules[i]
		t, err := normTag(r.Tag)
		if err != nil {
			return rf, fmt.Errorf("rules: rule %d: %w", i+1, err)
		}
		if j, dup := seen[t]; dup {
			return rf, fmt.Errorf("rules: rules %d and %d both compute tag %q", j, i+1, t)
		}
		seen[t] = i + 1
		r.Tag = t
		q := strings.TrimSpace(r.Query)
		q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
		head := strings.ToUpper(strings.SplitN(strings.TrimSpace(q)+" ", " ", 2)[0])
		switch {
		case q == "":
			return rf, fmt.Errorf("rules: rule %d (%s): query is missing", i+1, t)
		case head != "SELECT" && head != "WITH":
			return rf, fmt.Errorf("rules: rule %d (%s): the query must be a SELECT (or WITH … SELECT), not %q", i+1, t, head)
		case strings.Contains(q, ";"):
			return rf, fmt.Errorf("rules: rule %d (%s): one statement only (remove the \";\")", i+1, t)
		}
		r.Query = q
	}
	return rf, nil
}

// IDQuery runs a query returning one column of contact ids (the analytics store).
type IDQuery interface {
	ContactIDs(ctx context.Context, query string) (*roaring.Bitmap, error)
}

// RuleResult is what computing one rule changed.
type RuleResult struct {
	Tag     string `json:"tag"`
	Members uint64 `json:"members"` // live contacts with the tag now
	Added   uint64 `json:"added"`
	Removed uint64 `json:"removed"`
}

// ComputeRules runs each rule's query and makes its tag's members exactly the live
// contacts it returns (SetTag). A failing query stops before its tag changes; the
// rules before it are applied.
func (s *Store) ComputeRules(ctx context.Context, rf RuleFile, q IDQuery) ([]RuleResult, error) {
	var out []RuleResult
	for _, r := range rf.Rules {
		ids, err := q.ContactIDs(ctx, r.Query)
		if err != nil {
			return out, fmt.Errorf("rule %s: query: %w", r.Tag, err)
		}
		res, err := s.SetTag(ctx, r.Tag, ids)
		if err != nil {
			return out, fmt.Errorf("rule %s: %w", r.Tag, err)
		}
		out = append(out, res)
	}
	return out, nil
}

// SetTag makes tag's members exactly the live contacts among ids: it adds the missing
// ones and removes the others with TagContacts.
func (s *Store) SetTag(ctx context.Context, tag string, ids *roaring.Bitmap) (RuleResult, error) {
	t, err := normTag(tag)
	if err != nil {
		return RuleResult{}, err
	}
	res := RuleResult{Tag: t}
	cur, err := s.Evaluate(ctx, "tag:"+t)
	if err != nil {
		return res, err
	}
	add, err := s.TagContacts(ctx, t, roaring.AndNot(ids, cur), true)
	if err != nil {
		return res, err
	}
	rm, err := s.TagContacts(ctx, t, roaring.AndNot(cur, ids), false)
	if err != nil {
		return res, err
	}
	if add.Matched == 0 {
		// Listed in the library even when empty, so tags list shows the rule's tag.
		if err := s.rdb.SAdd(ctx, s.kTags(), t).Err(); err != nil {
			return res, fmt.Errorf("set tag %s: %w", t, err)
		}
	}
	res.Added, res.Removed = add.Changed, rm.Changed
	res.Members = cur.GetCardinality() + res.Added - res.Removed
	return res, nil
}
