// Package apikeys owns the /v1 HTTP API's keys and what they may do: the roles (admin,
// marketer, analyst, auditor), the one table that maps each role to its permissions,
// and the key store in Redis (create, list, revoke, authenticate).
//
// A key reads "hk_<id>_<secret>": id is 12 hex digits naming the key (it appears in
// lists, logs and the audit), secret 43 characters of base64url from 32 random bytes.
// Only the SHA-256 of the whole key is stored; Authenticate finds the record by the id
// and compares the digests in constant time, so the secret is never kept, logged or
// compared byte by byte. A key is shown once, by Create.
//
// Redis keys (P is the prefix; the hash tag keeps them in one slot of a cluster, as
// Create and Revoke change them together):
//
//	P{apikeys}:key:ID   HASH: name, role, permissions (comma-separated), hash (hex
//	                    SHA-256), rate (requests per second, 0: the server's default),
//	                    created, last_used and revoked (unix ms)
//	P{apikeys}:ids      ZSET: key ids by creation time
//	P{apikeys}:names    HASH: name → id of the key of that name that is not revoked
package apikeys

import (
	"fmt"
	"slices"
	"strings"
)

// Role is what a key is for.
type Role string

// The roles.
const (
	Admin    Role = "admin"    // everything
	Marketer Role = "marketer" // contacts, consent, templates, campaigns, reading webhooks; launch only with CampaignsLaunch
	Analyst  Role = "analyst"  // reports, and the campaigns, senders and templates they are about
	Auditor  Role = "auditor"  // the API's audit, consent, and campaigns
)

// Roles lists the roles.
var Roles = []Role{Admin, Marketer, Analyst, Auditor}

// Permission is one thing a key may do.
type Permission string

// The permissions. Each API route needs exactly one (x-permission in the OpenAPI spec).
const (
	ContactsRead  Permission = "contacts:read"
	ContactsWrite Permission = "contacts:write"
	// ContactsErase erases contacts (irreversible; the ledger keeps a tombstone): only an
	// admin's.
	ContactsErase   Permission = "contacts:erase"
	ConsentRead     Permission = "consent:read"
	ConsentWrite    Permission = "consent:write"
	CampaignsRead   Permission = "campaigns:read"
	CampaignsWrite  Permission = "campaigns:write" // create, pause, resume, cancel
	CampaignsLaunch Permission = "campaigns:launch"
	TemplatesRead   Permission = "templates:read"
	TemplatesWrite  Permission = "templates:write"
	SendersRead     Permission = "senders:read"
	// SendersWrite creates senders (they hold a provider's secret) and holds or resumes
	// them: only an admin's.
	SendersWrite Permission = "senders:write"
	ReportsRead  Permission = "reports:read"
	AuditRead    Permission = "audit:read"
	// WebhooksRead lists outbound webhook subscriptions and their delivery logs (never
	// their secrets); WebhooksWrite creates, deletes and replays them. A subscription
	// sends contact ids and message events to any URL, so only an admin may make one.
	WebhooksRead  Permission = "webhooks:read"
	WebhooksWrite Permission = "webhooks:write"
	// JourneysRead lists and shows journeys; JourneysWrite adds versions, pauses,
	// resumes and archives them. EventsWrite posts custom events (which enter journeys).
	JourneysRead  Permission = "journeys:read"
	JourneysWrite Permission = "journeys:write"
	EventsWrite   Permission = "events:write"
)

// Permissions lists every permission.
var Permissions = []Permission{ContactsRead, ContactsWrite, ConsentRead, ConsentWrite, CampaignsRead, CampaignsWrite,
	CampaignsLaunch, TemplatesRead, TemplatesWrite, SendersRead, ReportsRead, AuditRead, WebhooksRead, WebhooksWrite,
	JourneysRead, JourneysWrite, EventsWrite, SendersWrite, ContactsErase}

// rolePermissions is the role → permission table, the only one. A marketer's key gets
// CampaignsLaunch only when created with it (--can-launch); an admin's always has it.
var rolePermissions = map[Role][]Permission{
	Admin: Permissions,
	Marketer: {ContactsRead, ContactsWrite, ConsentRead, ConsentWrite, CampaignsRead, CampaignsWrite,
		TemplatesRead, TemplatesWrite, SendersRead, ReportsRead, WebhooksRead, JourneysRead, JourneysWrite, EventsWrite},
	Analyst: {ReportsRead, CampaignsRead, SendersRead, TemplatesRead, JourneysRead},
	Auditor: {AuditRead, ConsentRead, CampaignsRead},
}

// ParseRole checks a role's name.
func ParseRole(s string) (Role, error) {
	r := Role(strings.ToLower(strings.TrimSpace(s)))
	if _, ok := rolePermissions[r]; !ok {
		return "", fmt.Errorf("role %q: want admin, marketer, analyst or auditor", s)
	}
	return r, nil
}

// PermissionsOf returns what a key of role may do; canLaunch adds CampaignsLaunch to a
// marketer's. It is an error for roles that cannot write campaigns.
func PermissionsOf(role Role, canLaunch bool) ([]Permission, error) {
	ps, ok := rolePermissions[role]
	if !ok {
		return nil, fmt.Errorf("role %q: want admin, marketer, analyst or auditor", role)
	}
	ps = slices.Clone(ps)
	if canLaunch && !slices.Contains(ps, CampaignsLaunch) {
		if !slices.Contains(ps, CampaignsWrite) {
			return nil, fmt.Errorf("--can-launch: a %s key cannot write campaigns, so it cannot launch them (give it to a marketer key)", role)
		}
		ps = append(ps, CampaignsLaunch)
	}
	slices.Sort(ps)
	return ps, nil
}

// Can reports whether role (with canLaunch, as PermissionsOf) has p.
func Can(role Role, canLaunch bool, p Permission) bool {
	ps, err := PermissionsOf(role, canLaunch && role == Marketer)
	return err == nil && slices.Contains(ps, p)
}
