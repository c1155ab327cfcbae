// Package segments owns the contact store and audience selection: contact profiles, the
// identity index (phone number, email, Telegram chat id or LINE user id → contact id),
// tags, the CSV and JSON Lines
// import, and segment
// expressions evaluated to sets of contact ids. It does not own consent (an import hands
// opted_in rows to a ConsentSink; throttle keeps the ledger), campaigns, or analytics.
//
// # Contacts
//
// A contact is identified by its phone number in E.164, its email address, its
// Telegram chat id, its LINE user id, or several of them, and has a dense uint32 id allocated from a counter, so a set of contacts is a bitmap
// of at most 512 MiB and, at 10M contacts, 1.25 MB. An HMGET of the identity index
// finds the ids of known identities; the others are linked in one optimistic
// transaction per batch (WATCH the counter and the index, read them, then INCRBY and
// HSET in MULTI/EXEC), or, when concurrent writers keep making it fail, in one Lua
// script doing the same: concurrent importers of one person get one id and ids stay
// dense. A row whose identities already belong to two different contacts is
// rejected. Writes go in batches (4,000 rows by default): a few round trips per batch,
// never one per row, and no script per contact.
//
// # Redis keys
//
// P is the prefix given to NewStore (e.g. "herald:"); ID is a contact id in decimal.
// The identity keys carry the Redis Cluster hash tag {P ident}: with P = "herald:",
// herald:{herald:ident}:seq.
//
//	P{P ident}:seq        INCR: the last allocated contact id
//	P{P ident}:phone:N    HASH: E.164 → contact id, for the phones of index bucket N
//	P{P ident}:email:N    HASH: email address (lower case) → contact id, likewise
//	P{P ident}:telegram:N HASH: Telegram chat id (decimal) → contact id, likewise
//	P{P ident}:line:N     HASH: LINE user id (U + 32 lower-case hex) → contact id
//	P profiles:B          HASH: contact id → profile record, for ids B×128 to B×128+127
//	P tag:NAME            bitmap: contacts with tag NAME (bit = contact id)
//	P tags                SET: the tag library
//	P attr:country:CC     bitmap: contacts whose country is CC (TH, ID)
//	P attr:locale:LANG    bitmap: contacts whose locale's language is LANG (th, pt)
//	P contacts:all        bitmap: every live contact; the universe of "not"
//
// A profile record (record.go) holds phone, email, Telegram chat id (a zig-zag
// varint), LINE user id (its 16 bytes), name, country (ISO region of the
// phone, else the country column), tz (IANA zone), locale, custom attributes, created
// (unix ms) and source, as a version byte and fields of a kind byte and a
// length-prefixed value: a phone as the number its E.164 digits make, a zone as its
// index in a frozen table, a time as a number. Any bytes round-trip. A typical
// contact's record is under 64 bytes, so a bucket of 128 stays in Redis's compact
// listpack encoding at its default limits (hash-max-listpack-entries 128,
// hash-max-listpack-value 64); a bucket holding a longer record (long names, emails,
// many attributes) converts to a plain hash, still with no key per contact. A batch of
// 4,000 new contacts writes about 32 buckets. The identity index is split into 128
// buckets per kind by FNV-1a of the phone or email, so a batch's link transaction
// WATCHes at most 129 keys and no hash ever holds more than ~1/128 of the contacts
// (no rehash of millions of entries). A profile record is written by a script that
// sets it only where the bucket still holds the record the writer read (one call
// per bucket, never per contact); one that changed meanwhile is read again and the
// rows merged into it, so concurrent writers of one contact keep each other's fields.
// The records of contacts the batch created were never read: in buckets that do not
// exist yet (most of an import's) they go by a plain HSET in a transaction that
// WATCHes those buckets and checks they still do not exist, with the rest of the
// batch's writes in the same MULTI/EXEC (when the batch fills at least 4 new buckets,
// and not on Redis Cluster, where one transaction cannot span their slots); in a
// bucket that exists, in a smaller batch, or if another writer touches one meanwhile,
// by a lighter script that sets them only where the bucket has none.
//
// A contact known by email only has no phone: it is in segments like any other, and
// cannot be sent WhatsApp messages until a row gives its phone; likewise a contact
// known by a Telegram chat id or LINE user id only.
//
// Channel identities: LookupIdentity(channel, id) finds a contact by its Telegram
// chat id ("telegram"), LINE user id ("line"), phone ("whatsapp", "sms") or email,
// with ErrUnknownContact (= ErrNotFound) when none has it. LinkIdentity attaches a
// chat id or LINE user id to an existing contact (a Telegram /start payload, a LINE
// follow naming it): the new entry and the removal of the contact's previous one on
// that channel are one script on the index, then the record follows; an id of another
// contact is refused with ErrIdentityTaken. CreateWithIdentity is the inbound path for
// someone unknown: Upsert of a contact known by that id only (find-or-create, so a
// second follow finds the first's contact), its source the channel's name. A Telegram
// chat id is a non-zero int64 in decimal (negative: a group or channel); "+", leading
// zeros and Excel's scientific notation (1.23457E+11, digits lost) are rejected, not
// repaired. A LINE user id is U and 32 hex digits; LINE writes them in lower case, so
// an upper-cased one is lowered back; group (C…) and room (R…) ids are rejected.
//
// Bitmaps are the source of truth for tags, and the only copy: a contact's tags (for
// Profiles and Preview) are read with one BITFIELD_RO per tag of the library, and an
// import reads the bits of the tags its rows name (one BITFIELD_RO per tag and batch)
// to tell an updated row from an unchanged one. Adding and removing a tag is a SETBIT,
// with no read-modify-write. An import writes bitmaps before profiles (in one
// transaction or pipeline), so an import cut short is completed by importing the same
// file again.
//
// Redis Cluster: the counter and the identity buckets meet in one transaction (and in
// its fallback script), so they share the hash tag {P ident}: one slot per store,
// while profile buckets and bitmaps spread over the cluster. Every other command
// touches one key, and segments are combined in Go (roaring), never with BITOP or
// SINTERSTORE across keys. On a cluster a pipeline's commands go to several nodes, so
// "bitmaps before profiles" holds per node only; importing again still completes a
// cut-short import.
//
// Older layouts keep working. Stores written before the hash tag (P contact:seq,
// P ident:phone) are renamed to P{P ident}:seq and P{P ident}:phone the first time a
// Store touches the index (RENAMENX; two layouts at once are refused with what to do).
// Stores written before buckets (P contact:ID hashes with t.NAME tag fields, and one
// P{P ident}:phone and P{P ident}:email hash) are read in both layouts while those
// identity hashes exist, and UpgradeLayout (run first by every import and Upsert)
// moves them into buckets in steps of 500 contacts (SCAN, HGETALL, one script per
// bucket, DEL; HSCAN and one script per 500 identities), so no command blocks Redis;
// a write of a contact meanwhile moves it too.
//
// Snapshot freezes a segment's members; the dispatcher streams them in id order with
// Snapshot.Next(after, buf), resuming after the last id it finished. Preview samples
// member profiles evenly. TagContacts adds or removes a tag for a set of contacts
// (from a segment, PhoneIDs or ReadPhoneList); EraseContact removes a contact after
// recording its tombstone through the Erasure interface (the consent ledger).
// ComputeRules makes rule tags' members exactly what each rule's analytics query
// returns (ParseRules reads the YAML rule file; IDQuery runs the queries). RunBench is
// the `herald bench segments` scenario.
//
// # Import
//
// ImportJSONL takes JSON Lines with the same keys as the CSV columns below (arrays of
// tags allowed). ImportCSV streams a file of any length in constant memory. The first non-blank line
// is the header; column names are case-insensitive, and spaces and punctuation in them
// count as "_" (so "WhatsApp Opt-In" is whatsapp_opt_in). Recognized columns:
//
//	phone      phone, phone_number, mobile, msisdn, whatsapp, mobile_number, whatsapp_number
//	name       name, first_name, full_name
//	email      email, e_mail, email_address
//	country    country (ISO 3166 code; also the region of national numbers in that row)
//	locale     locale, language (th, pt-BR; indexed by language)
//	timezone   timezone, tz, time_zone (IANA name; default: the phone number's zone,
//	           else the country's when it has one, as for contacts without a phone)
//	tags       tags, labels (separated by ";", "|" or ",")
//	opted_in   opted_in, optin, opt_in, consent, whatsapp_opt_in
//	           (true/false, yes/no, y/n, t/f, 1/0; empty: not given)
//	telegram_chat_id  telegram_chat_id, telegram, telegram_id
//	line_user_id      line_user_id, line, line_id
//
// A file needs a phone, email, telegram_chat_id or line_user_id column, and each row
// one of them. Any other
// column is a custom attribute. ImportOptions.Columns maps other names. The
// delimiter (",", ";" or tab) is detected from the header; a UTF-8 byte order mark, CRLF
// or LF line endings, quoted fields with delimiters, quotes ("") and line breaks, blank
// lines and surrounding spaces are all accepted. Tags are normalized to lower case
// a-z, 0-9, "_" and "-" (spaces and punctuation become "_").
//
// Empty cells leave stored values alone, tags are added to a contact's tags (not
// replacing them) and ImportOptions.RemoveTags takes tags off, so importing a file
// twice changes nothing the second time. Rows naming one phone number, however written
// ("+66 81 234 5678" and "0812345678" with region TH), or one email address, in any
// case, or one chat id or LINE user id, are one contact; a row with several links them
// to it. An identity a contact's row brings in place of the one it had of that kind
// replaces it, and the old one stops finding the contact.
//
// A bad row is rejected with its physical line number (the header is line 1; a quoted
// field over several lines counts them all) and a stable reason: "phone is missing",
// "invalid phone", "wrong number of fields (got 3, header has 4)", "invalid UTF-8",
// "invalid opted_in value", "invalid email", "invalid country", "invalid locale",
// "invalid time zone", "invalid tag", "invalid telegram chat id", "invalid LINE user
// id", "malformed row", "line too long", "phone and email belong to different
// contacts" or "identities belong to different contacts" (a row with a chat id or LINE
// id); it never affects other rows. A quoted field
// that is never closed rejects only the line it starts on: the lines after it are read
// again as rows.
//
// An import runs four stages at once, each batch passing through them in file order:
// reading and parsing (on every core), resolving the batch's identities, merging its
// rows into the stored profiles, and writing it (one transaction or pipeline) with its
// consent rows handed to the ConsentSink, so one batch's link transaction overlaps the
// merge of the one before. Resolving and writing each take the batches waiting for
// them together, up to 4,000 rows (smaller batches share round trips), and the
// parsers yield every 64 rows, so the stages woken by Redis's answers do not wait for
// a parser's time slice. A batch holding a contact of a batch that was not yet written when its
// identities were resolved waits for that write and resolves again, so every row
// merges into what the rows before it left (and a phone or email a contact gave up
// finds no one). Bits go as one BITFIELD per bitmap and batch; where 64 aligned ids
// are all contacts the batch creates (an import allocates consecutive ids), one SET
// i64 writes their word.
//
// Phone numbers are parsed by phonenumbers. A number written "+<digits>" (single
// spaces or hyphens allowed) skips phonenumbers.Parse's regular expressions when
// nothing but the calling code can be split off; TestFastPhoneMatchesParse and
// FuzzFastPhone check this gives what Parse gives. That path (fastPhone) goes from
// the digits to the E.164 form, region and zone with tables built once: calling codes
// by value, national prefixes and validity as DFAs compiled from the same metadata
// patterns (phonevalid.go), and time zones from a digit trie of phonenumbers' prefix
// map (phonezone.go). Validity is phonenumbers' IsValidNumberForRegion on every path;
// TestPhoneValidityMatchesPhonenumbers, TestPhoneZoneMatchesPhonenumbers and
// FuzzPhoneValidity check they agree.
//
// # Segment expressions
//
//	expr    = and { "or" and }
//	and     = unary { "and" unary }
//	unary   = "not" unary | "(" expr ")" | term
//	term    = NAME                                   a tag: vip
//	        | FIELD ":" VALUE                        country:TH, locale:th, tag:vip
//	        | FIELD ":" "(" VALUE { "," VALUE } ")"  country:(TH, ID)
//	        | FIELD "in" "(" VALUE { "," VALUE } ")" country in (TH, ID), tag in (vip, gold)
//	FIELD   = "tag" | "country" | "locale"
//	NAME, VALUE: letters, digits, "_" and "-"
//
// Keywords, tags and values are case-insensitive; not binds tighter than and, and
// tighter than or. Example: vip and country in (TH, ID) and not churned. A tag named
// like a keyword or a field is written tag:NAME (tag:and). Countries are ISO 3166 codes;
// locales match by language (locale:pt matches pt-BR and pt-PT). Custom attributes are
// not indexed: tag contacts to select them. Parse errors give the column:
//
//	segment: column 12: expected tag, attribute or "(" but found ")"
//
// Members are live contacts only (those in contacts:all); not x is contacts:all minus x.
// A tag no contact has is an empty set, not an error: Evaluate and Count stay quiet,
// and Explain returns it as a Warning, with the count of each term, for the CLI and
// console to show before a launch.
package segments
