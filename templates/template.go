package templates

import (
	"regexp"
)

// Kind is what a template renders to.
type Kind string

// Kinds.
const (
	// KindText is a free-form text message: only inside the 24h customer-service window.
	KindText Kind = "text"
	// KindWhatsAppTemplate is an approved WhatsApp Cloud API template: usable any time.
	KindWhatsAppTemplate Kind = "whatsapp_template"
	// KindEmail is an email: subject, plain-text part and optional HTML part.
	KindEmail Kind = "email"
)

// Channels. Sending on sms and email comes later; their templates are validated and
// rendered already.
const (
	ChannelWhatsApp = "whatsapp"
	ChannelSMS      = "sms"      // kind text: the body, counted in GSM-7 / UCS-2 segments
	ChannelEmail    = "email"    // kind email
	ChannelTelegram = "telegram" // kind text: the body, with the options of Template.Telegram
	ChannelLINE     = "line"     // kind text: a LINE text message (links become buttons); no 24h window
)

// MaxLINEChars is the longest LINE text message, in characters.
const MaxLINEChars = 5000

// WhatsApp template categories.
const (
	CategoryMarketing      = "MARKETING"
	CategoryUtility        = "UTILITY"
	CategoryAuthentication = "AUTHENTICATION"
)

// Variable types.
const (
	TypeString = "string"
	TypeNumber = "number"
	TypeBool   = "bool"
	TypeDate   = "date" // RFC 3339 (or 2006-01-02[ 15:04[:05]]) string, or unix seconds
)

// Button sub-types.
const (
	ButtonURL        = "url"         // dynamic URL suffix: a text parameter
	ButtonQuickReply = "quick_reply" // a payload parameter that comes back on the reply
)

// Limits, checked when a file is parsed (against the literal text and a render with the
// example values) and again on every render.
const (
	// MaxTextBody is the longest WhatsApp text body, in characters.
	MaxTextBody = 4096
	// MaxParamText is the longest template parameter (body, button), in characters.
	MaxParamText = 1024
	// MaxTemplateBody is the longest approved template body once its parameters are
	// filled in, in characters; checked at parse time against preview.
	MaxTemplateBody = 1024
	// MaxHeaderText is the longest text header, in characters.
	MaxHeaderText = 60
	// MaxMediaLink is the longest media URL accepted.
	MaxMediaLink = 2048
	// MaxButtons is the most buttons a WhatsApp template has.
	MaxButtons = 10
	// MaxParams is the most body parameters accepted.
	MaxParams = 100
	// MaxValueBytes bounds every string Liquid builds: an output, a capture, a filter result
	// and every variable value passed in.
	MaxValueBytes = 64 << 10
	// MaxFileBytes bounds a template file.
	MaxFileBytes = 256 << 10
	// MaxFieldBytes bounds the Liquid source of one field.
	MaxFieldBytes = 16 << 10
	// MaxEmailSubject is the longest email subject, in characters (one header line;
	// clients show far fewer).
	MaxEmailSubject = 255
	// MaxEmailBody is the longest email part (text or HTML), in characters: Gmail clips
	// messages past about 102 KB, and every Liquid output is bounded by MaxValueBytes.
	MaxEmailBody = MaxValueBytes
	// MaxVariants bounds the variants of one template.
	MaxVariants = 26
	// MaxWeight bounds one variant's weight.
	MaxWeight = 1_000_000
)

var (
	nameRE     = regexp.MustCompile(`^[a-z0-9_]+$`)
	varNameRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	localeRE   = regexp.MustCompile(`^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$`)
	paramRE    = regexp.MustCompile(`^[a-z0-9_]+$`)
	maxNameLen = 512
)

// Template is a parsed template file. Parse it with ParseFile; render it through Compile.
type Template struct {
	Name        string
	Description string
	Channel     string
	Locale      string
	Kind        Kind
	Preview     string // the approved body with Meta's placeholders, for people and checks
	Variables   []Variable
	// Variants has at least one entry. A file without variants yields one named
	// "default" with weight 1; its content is the top-level body or whatsapp section.
	Variants []Variant
	// Telegram holds a telegram template's parse mode, buttons and media (nil: plain text).
	Telegram *Telegram
	// Version is set by the Store (Save, Get); 0 for a template only parsed.
	Version int

	file  string         // for error messages
	lines map[string]int // field path -> line of its value in the file
}

// Variable is a declared variable. Only declared variables are visible to Liquid.
type Variable struct {
	Name        string
	Type        string // TypeString, TypeNumber, TypeBool, TypeDate
	Default     any    // used when the variable is missing; nil: none
	Required    bool   // missing or empty is a render error
	Example     any    // used for the check at parse time; nil: the default, else a placeholder
	Description string
}

// Variant is one A/B arm. For KindText Body is its Liquid source; for
// KindWhatsAppTemplate WhatsApp is its template (fields the variant does not set are
// inherited from the top-level whatsapp section).
type Variant struct {
	Name     string
	Weight   int // 0 pauses the variant
	Body     string
	WhatsApp *WhatsApp
	Email    *Email // KindEmail
	Preview  string // overrides Template.Preview for this variant's template

	paths variantPaths // where its fields came from in the file
}

// variantPaths name a variant's Liquid fields in error messages; inherited fields keep
// the path of the section they come from.
type variantPaths struct {
	body        string
	bodySection string // whatsapp.body or variants.x.whatsapp.body
	header      string // whatsapp.header or variants.x.whatsapp.header
	params      []string
	buttons     []string
}

// WhatsApp maps variables to an approved template's parameters.
type WhatsApp struct {
	Name     string // approved template name
	Language string
	Category string
	Header   *Header // a header with a parameter; nil: none (or a static one)
	Params   []Param // body parameters in placeholder order
	Buttons  []Button
}

// Header types.
const (
	HeaderText     = "text"
	HeaderImage    = "image"
	HeaderDocument = "document"
	HeaderVideo    = "video"
)

// Header is the parameter of a template's header: a text ({{1}} in the approved
// header) or a media file, by link or by uploaded media id.
type Header struct {
	Type     string // HeaderText, HeaderImage, HeaderDocument or HeaderVideo
	Text     string // Liquid: the text parameter (text)
	Link     string // Liquid: an https URL of the media (media)
	ID       string // an uploaded media id, instead of Link (media)
	Filename string // Liquid: the file name shown (document)
}

// Email is an email's Liquid sources.
type Email struct {
	Subject string
	Text    string // the plain-text part (required)
	HTML    string // the HTML part; empty: text only
}

// Param is one body parameter; Name is empty for positional parameters ({{1}}, {{2}}).
type Param struct {
	Name string
	Text string // Liquid
}

// Button is a dynamic button parameter.
type Button struct {
	Index   int
	SubType string // ButtonURL or ButtonQuickReply
	Text    string // Liquid: the URL suffix (url)
	Payload string // Liquid: the payload (quick_reply)
}
