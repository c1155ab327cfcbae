package app

import (
	"context"
	"fmt"
	"io"
	"math"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/herald-dev/herald/segments"
)

// TagTarget names the contacts a tag change is for, in one of four ways: contact ids,
// phone numbers and email addresses, a file of them (one a line, as
// segments.ReadPhoneList reads it), or a segment expression.
type TagTarget struct {
	ContactIDs []uint64
	Phones     []string  // phones (E.164, or national in Region) or emails
	File       io.Reader // phones or emails, one a line
	Segment    string
	Region     string // of national phone numbers
}

// TagResult is what TagContacts did: the change, and the ids, phones, emails or file
// lines that named no contact (Line is the file's line, or the position in the list).
type TagResult struct {
	Change   segments.TagChange `json:"change"`
	Rejected []segments.Reject  `json:"rejected"`
}

// TagContacts adds tag to (add) or removes it from the contacts t names; progress (may
// be nil) is called after each pipeline. Refused input is a *FieldError naming
// contact_ids, phones, file, segment, default_region or tag. Running it again changes
// nothing.
func TagContacts(ctx context.Context, comp *Components, tag string, add bool, t TagTarget, progress func(done, total uint64)) (TagResult, error) {
	kinds := 0
	if len(t.ContactIDs) > 0 {
		kinds++
	}
	if len(t.Phones) > 0 {
		kinds++
	}
	if t.File != nil {
		kinds++
	}
	if t.Segment != "" {
		kinds++
	}
	if kinds != 1 {
		return TagResult{}, fieldErr("contact_ids", "give the contacts one way: by contact ids, phones/emails, a file of them, or a segment")
	}
	var res TagResult
	var ids *roaring.Bitmap
	switch {
	case t.Segment != "":
		if _, err := segments.Parse(t.Segment); err != nil {
			return res, &FieldError{Field: "segment", Err: err}
		}
		var err error
		if ids, err = comp.Contacts.Evaluate(ctx, t.Segment); err != nil {
			return res, err
		}
	case len(t.ContactIDs) > 0:
		ids = roaring.New()
		for i, id := range t.ContactIDs {
			if id == 0 || id > math.MaxUint32 {
				return res, fieldErr(fmt.Sprintf("contact_ids/%d", i), "contact id %d is out of range (1 to 4294967295)", id)
			}
			ids.Add(uint32(id))
		}
	default:
		phones := t.Phones
		var lines []int
		if t.File != nil {
			var err error
			if phones, lines, err = segments.ReadPhoneList(t.File); err != nil {
				return res, &FieldError{Field: "file", Err: err}
			}
		}
		var err error
		ids, res.Rejected, err = comp.Contacts.PhoneIDs(ctx, phones, t.Region)
		if err != nil {
			return res, &FieldError{Field: "default_region", Err: err}
		}
		for i := range res.Rejected {
			if lines != nil {
				res.Rejected[i].Line = lines[res.Rejected[i].Line-1]
			}
		}
	}
	ch, err := comp.Contacts.TagContactsProgress(ctx, tag, ids, add, progress)
	if err != nil {
		if ch.Tag == "" {
			return res, &FieldError{Field: "tag", Err: err}
		}
		return res, err
	}
	res.Change = ch
	if len(t.ContactIDs) > 0 && ch.Matched < ids.GetCardinality() {
		// Ids that name no live contact are rejects too, as unknown phones are.
		list := ids.ToArray()
		cs, err := comp.Contacts.ProfileFields(ctx, list)
		if err != nil {
			return res, err
		}
		missing := map[uint32]bool{}
		for i, c := range cs {
			if c.ID == 0 {
				missing[list[i]] = true
			}
		}
		for i, id := range t.ContactIDs {
			if missing[uint32(id)] {
				res.Rejected = append(res.Rejected, segments.Reject{Line: i + 1, Reason: "no such contact", Value: fmt.Sprint(id)})
				delete(missing, uint32(id))
			}
		}
	}
	return res, nil
}
