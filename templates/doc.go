// Package templates owns message templates: the YAML file a marketer keeps in git, its
// validation (strict keys, declared variables, channel limits checked at save), the
// hardened Liquid it is written in, the deterministic choice of an A/B variant per
// (campaign, contact), rendering to what a channel sends (a free-form WhatsApp text or
// the exact Cloud API template object), and the versioned store in Redis with the cache a
// worker renders from. It does not decide whether a message may be sent (throttle) nor
// send it (dispatcher).
//
// # File format
//
//	name: spring_sale            # [a-z0-9_]+, the key in the store
//	channel: whatsapp
//	locale: en_US
//	kind: whatsapp_template      # or text: free-form, only inside the 24h window
//	whatsapp:
//	  name: spring_sale          # the approved template at Meta
//	  language: en_US            # default: locale
//	  category: MARKETING        # MARKETING | UTILITY | AUTHENTICATION
//	  header:                    # optional: the header's parameter
//	    type: document           # text | image | document | video
//	    link: "https://files.example.com/{{ order }}.pdf"   # https, Liquid; or id: <media id>
//	    filename: "Invoice {{ order }}.pdf"                 # document only (text: text: "…", ≤ 60)
//	  body:                      # named parameters in order (a list: positional {{1}}, {{2}})
//	    first_name: "{{ name | default: 'there' }}"
//	  buttons:
//	    - {index: 0, sub_type: url, text: "{{ coupon }}"}
//	preview: "Hi {{first_name}} ..."   # the approved body, Meta placeholders; checked against body
//	variables:                   # string | number | bool | date; only these are visible
//	  name: {type: string, default: ""}
//	  coupon: {type: string, required: true, example: SPRING24}
//	  points: number             # shorthand for {type: number}
//	variants:                    # optional A/B split; see Variant
//	  - {name: a, weight: 50}
//	  - {name: b, weight: 50, whatsapp: {name: spring_sale_b}}
//
// A text template has body: instead of whatsapp:, or variants each with a body. A
// template for channel sms is kind text; its body is counted in SMS segments (GSM-7:
// 160, or 153 per part, extension characters like € twice; UCS-2 as soon as one
// character is outside GSM-7: 70, or 67 per part) and refused past MaxSMSSegments. A
// template for channel email is kind email:
//
//	email:
//	  subject: "Welcome, {{ name | default: 'friend' }}"   # one line, ≤ 255 characters
//	  text: |                                              # the plain-text part, required
//	    ...
//	  html: "<p>...</p>"                                   # optional
//
// A template for channel telegram is kind text with an optional telegram section
// (parse_mode MarkdownV2 or HTML, buttons [{text, url}], photo or document, link_preview);
// with a parse mode every output is escaped for where it lands (see EscapeMarkdownV2,
// EscapeHTML), so variables never add markup.
//
// A whatsapp_template variant inherits what it does not set from the top-level whatsapp
// section (body and buttons are replaced whole).
//
// ParseFile rejects unknown keys and reports every problem as file:line: field: message.
// It also renders each variant with the variables' examples (else defaults, else
// placeholders) and checks that render against the limits (text 4096 characters,
// parameter 1024, filled-in preview 1024) and for empty parameters, so a template that
// cannot send is refused when it is saved, not when the campaign runs.
//
// # Liquid
//
// Templates are Liquid (github.com/osteele/liquid) with a reduced tag and filter set: no
// include or render (they read files), no loops (for, tablerow, cycle), no ranges; only the
// declared variables are visible, as plain strings, numbers and booleans; every string a
// filter builds and every output is bounded (MaxValueBytes). Unknown variables, tags and
// filters are errors when the file is parsed, with the file line and field. Templates are
// parsed once by Compile; Render never parses.
//
// # Filters
//
// Strings: default, capitalize, upcase, downcase, strip, lstrip, rstrip,
// strip_newlines, append, prepend, replace, replace_first, remove, remove_first,
// truncate, truncatewords, slice, split, join, first, last, size, url_encode,
// url_decode, escape, escape_once. Numbers: plus, minus, times, divided_by, modulo, abs,
// ceil, floor, round, at_least, at_most, number_with_delimiter, format_number.
//
// The standard filters give Shopify Liquid's output (numbers.go): integers stay integers
// ({{ 7 | divided_by: 2 }} is 3, -7 is -4: Ruby floors), a float operand computes on its
// shortest decimal ({{ 500 | times: 0.97 | round: 2 }} is 485.0) and floats print as
// Ruby's Float#to_s; escape writes &quot; and &#39;. Herald is stricter where Shopify
// guesses: a string that is not a number, or a division by zero, is an error.
//
// Locale-aware (CLDR separators through golang.org/x/text; an empty or unknown locale
// formats as en_US):
//
//	{{ points | number: locale }}            1.234.567 (de_DE)   1,234,567 (th_TH)
//	{{ price | currency: "BRL", locale }}     R$ 1.234,50 (pt_BR); "" = the locale's currency
//	{{ ends | date: "%d/%m %H:%M", timezone }} in the recipient's IANA zone
//	{{ ends | date: "%a %d %b", timezone, locale }}   sáb 01 mar (pt), Sa 01 Mär (de):
//	                                          names in pt, id, de, th, es, fr; else English
//
// Declare locale and timezone as variables with defaults (the worker passes the
// contact's locale and timezone) so a contact without them still gets a message.
//
// # Rendering speed
//
// Compile also translates the common field shapes — literal text and outputs
// {{ var | filter: arg, … }} whose arguments are literals or declared variables — into
// a small program Render runs without osteele (no bindings map, no reflection); every
// other shape (tags, whitespace control, lists) renders through osteele. Both give the
// same text and errors (FuzzFastPath). BenchmarkRender compares the two.
//
// # Tracked links
//
// Rendered.TrackLinks rewrites the http(s) URLs of a message into
// https://<base>/c/<token> links (package links: HMAC-signed tokens carrying campaign,
// contact, link index and target, verified without a lookup at redirect time).
//
// # Variants
//
// A variant is chosen from fmix64(FNV-1a-64(campaign + ":" + decimal contact id)) modulo
// the sum of the weights, walking the variants in file order, so a resend or an audit
// picks the same variant again.
//
// # Redis keys
//
// P is the configured prefix; {name} is a Redis Cluster hash tag, so one template's keys
// share a slot.
//
//	P tpl:{name}          HASH version -> JSON record (source, sha256, saved_at, summary)
//	P tpl:{name}:latest   STRING latest version
//	P tpl:{name}:locales  HASH locale (lower case, "_") -> stored name
//	P tpls                SET of template names
//
// Locales: the first locale saved under a name is its default; saving the same name in
// another locale stores an alternate under name + "__" + locale (its own versions).
// Cache.GetFor picks a contact's exact locale, else one of its language, else the default.
package templates
