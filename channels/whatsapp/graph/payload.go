// Package graph is the wire of the WhatsApp Business Cloud API (Meta's Graph API): the
// client of POST /{version}/{phone-number-id}/messages and its request and response
// shapes, the error code table (Codes, rendered to docs/providers/whatsapp.md) and its
// classifier, and the webhook payloads (statuses, inbound messages, user preferences)
// with their signature and a fast decoder of status batches.
//
// It imports nothing of Herald's but throttle (the pace signals its codes ask for), so
// templates can build its payloads. It does not know campaigns or the dispatcher: the
// dispatcher.Channel adapter is channels/whatsapp, and the sandbox that speaks the same
// shapes from the other side is channels/whatsapp/sandbox.
//
// Start with Client.Send, Classify and ParseNotification.
package graph

// SendRequest is the JSON body of POST /{version}/{phone-number-id}/messages.
type SendRequest struct {
	MessagingProduct      string    `json:"messaging_product"` // always "whatsapp"
	RecipientType         string    `json:"recipient_type,omitempty"`
	To                    string    `json:"to"` // E.164 with "+"
	Type                  string    `json:"type"`
	Text                  *Text     `json:"text,omitempty"`
	Template              *Template `json:"template,omitempty"`
	BizOpaqueCallbackData string    `json:"biz_opaque_callback_data,omitempty"`
}

// Text is a free-form text body (only inside the 24h customer-service window).
type Text struct {
	PreviewURL bool   `json:"preview_url"`
	Body       string `json:"body"`
}

// Template is an approved message template with its parameters.
type Template struct {
	Name       string      `json:"name"`
	Language   Language    `json:"language"`
	Components []Component `json:"components,omitempty"`
}

// Language of a template.
type Language struct {
	Code string `json:"code"`
}

// Component is a template part: header, body or button.
type Component struct {
	Type       string      `json:"type"`               // header, body, button
	SubType    string      `json:"sub_type,omitempty"` // url, quick_reply (buttons)
	Index      *int        `json:"index,omitempty"`    // button index (buttons)
	Parameters []Parameter `json:"parameters,omitempty"`
}

// Parameter is one template parameter. Named parameters carry ParameterName; positional
// ones omit it and follow placeholder order.
type Parameter struct {
	Type          string `json:"type"` // text, image, document, video, payload, currency, date_time
	ParameterName string `json:"parameter_name,omitempty"`
	Text          string `json:"text,omitempty"`
	Payload       string `json:"payload,omitempty"`
	Image         *Media `json:"image,omitempty"`
	Document      *Media `json:"document,omitempty"`
	Video         *Media `json:"video,omitempty"`
}

// Media is a header media reference.
type Media struct {
	Link     string `json:"link,omitempty"`
	ID       string `json:"id,omitempty"`
	Filename string `json:"filename,omitempty"`
}

// SendResponse is the body of an accepted send. Accepted is not delivered.
type SendResponse struct {
	MessagingProduct string            `json:"messaging_product"`
	Contacts         []ResponseContact `json:"contacts"`
	Messages         []ResponseMessage `json:"messages"`
}

// ResponseContact maps the input number to the WhatsApp id (they may differ).
type ResponseContact struct {
	Input string `json:"input"`
	WaID  string `json:"wa_id"`
}

// ResponseMessage carries the provider message id (wamid...).
type ResponseMessage struct {
	ID            string `json:"id"`
	MessageStatus string `json:"message_status,omitempty"`
}

// ErrorBody is the body of a refused request.
type ErrorBody struct {
	Error ErrorObject `json:"error"`
}

// ErrorObject is Graph API's error object. Branch on Code, not on the HTTP status.
type ErrorObject struct {
	Message      string     `json:"message"`
	Type         string     `json:"type"`
	Code         int        `json:"code"`
	ErrorSubcode int        `json:"error_subcode,omitempty"`
	ErrorData    *ErrorData `json:"error_data,omitempty"`
	FBTraceID    string     `json:"fbtrace_id,omitempty"`
}

// ErrorData holds the error details.
type ErrorData struct {
	MessagingProduct string `json:"messaging_product,omitempty"`
	Details          string `json:"details"`
}

// Notification is the body of a webhook POST.
type Notification struct {
	Object string  `json:"object"` // whatsapp_business_account
	Entry  []Entry `json:"entry"`
}

// Entry is one WhatsApp Business Account's batch of changes.
type Entry struct {
	ID      string   `json:"id"`
	Changes []Change `json:"changes"`
}

// Change is one field's update; Field is "messages" for statuses and inbound messages,
// "user_preferences" for marketing stop/resume.
type Change struct {
	Field string `json:"field"`
	Value Value  `json:"value"`
}

// Value carries statuses, inbound messages and user preferences of one phone number.
type Value struct {
	MessagingProduct string           `json:"messaging_product"`
	Metadata         Metadata         `json:"metadata"`
	Contacts         []WebhookContact `json:"contacts,omitempty"`
	Messages         []InboundMessage `json:"messages,omitempty"`
	Statuses         []Status         `json:"statuses,omitempty"`
	UserPreferences  []UserPreference `json:"user_preferences,omitempty"`
	Errors           []WebhookError   `json:"errors,omitempty"`
}

// Metadata names the business phone number the change is about.
type Metadata struct {
	DisplayPhoneNumber string `json:"display_phone_number"`
	PhoneNumberID      string `json:"phone_number_id"`
}

// WebhookContact is the sender profile of inbound messages.
type WebhookContact struct {
	Profile struct {
		Name string `json:"name"`
	} `json:"profile"`
	WaID string `json:"wa_id"`
}

// Status is a delivery status of a message we sent.
type Status struct {
	ID                    string         `json:"id"`     // wamid
	Status                string         `json:"status"` // sent, delivered, read, failed, played
	Timestamp             string         `json:"timestamp"`
	RecipientID           string         `json:"recipient_id"`
	BizOpaqueCallbackData string         `json:"biz_opaque_callback_data,omitempty"`
	Errors                []WebhookError `json:"errors,omitempty"`
	Pricing               *Pricing       `json:"pricing,omitempty"`
	Conversation          *Conversation  `json:"conversation,omitempty"`
}

// WebhookError is an error attached to a failed status.
type WebhookError struct {
	Code      int        `json:"code"`
	Title     string     `json:"title"`
	Message   string     `json:"message,omitempty"`
	ErrorData *ErrorData `json:"error_data,omitempty"`
}

// Pricing rides on "sent" statuses.
type Pricing struct {
	Billable     bool   `json:"billable"`
	PricingModel string `json:"pricing_model"`
	Type         string `json:"type,omitempty"`
	Category     string `json:"category"`
}

// Conversation rides on some statuses.
type Conversation struct {
	ID     string `json:"id"`
	Origin struct {
		Type string `json:"type"`
	} `json:"origin"`
}

// InboundMessage is a message a user sent to one of our numbers.
type InboundMessage struct {
	From        string       `json:"from"`
	ID          string       `json:"id"`
	Timestamp   string       `json:"timestamp"`
	Type        string       `json:"type"` // text, button, interactive, image, ...
	Text        *InboundText `json:"text,omitempty"`
	Button      *Button      `json:"button,omitempty"`
	Interactive *Interactive `json:"interactive,omitempty"`
	Context     *MsgContext  `json:"context,omitempty"`
}

// InboundText is the body of a text message.
type InboundText struct {
	Body string `json:"body"`
}

// Button is a quick-reply template button press.
type Button struct {
	Payload string `json:"payload"`
	Text    string `json:"text"`
}

// Interactive is a button or list reply.
type Interactive struct {
	Type        string `json:"type"` // button_reply, list_reply
	ButtonReply *Reply `json:"button_reply,omitempty"`
	ListReply   *Reply `json:"list_reply,omitempty"`
}

// Reply is the chosen button or list row.
type Reply struct {
	ID    string `json:"id"`
	Title string `json:"title"`
}

// MsgContext links a reply to the message it answers.
type MsgContext struct {
	From string `json:"from"`
	ID   string `json:"id"`
}

// UserPreference is a user's marketing stop/resume.
type UserPreference struct {
	WaID      string `json:"wa_id"`
	Detail    string `json:"detail,omitempty"`
	Category  string `json:"category"` // marketing_messages
	Value     string `json:"value"`    // stop, resume
	Timestamp int64  `json:"timestamp"`
}
