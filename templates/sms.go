package templates

import "unicode/utf16"

// SMS encodings.
const (
	EncodingGSM7 = "GSM-7"
	EncodingUCS2 = "UCS-2"
)

// SMS limits: a single message holds 160 GSM-7 septets or 70 UCS-2 code units; a
// concatenated one spends 7 septets (3 code units) of each part on the header.
const (
	smsGSMSingle  = 160
	smsGSMPart    = 153
	smsUCS2Single = 70
	smsUCS2Part   = 67
	// MaxSMSSegments is the most parts one SMS may be split into (Twilio refuses bodies
	// over 1,600 characters; ten parts is the usual carrier ceiling).
	MaxSMSSegments = 10
	// MaxSMSChars bounds an SMS body in characters.
	MaxSMSChars = 1600
)

// gsmBasic is the GSM 03.38 basic character set; gsmExt the extension table, whose
// characters take two septets (escape + code).
var (
	gsmBasic = runeSet("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
	gsmExt   = runeSet("^{}\\[~]|€\f")
)

func runeSet(s string) map[rune]bool {
	m := make(map[rune]bool, len(s))
	for _, r := range s {
		m[r] = true
	}
	return m
}

// SMSSegments returns how many parts an SMS body is sent as and its encoding: GSM-7
// when every character is in the GSM 03.38 set (extension characters like € { } [ ]
// count twice), else UCS-2 (UTF-16 code units: an emoji counts twice). A part boundary
// never splits an escape pair or a surrogate pair.
func SMSSegments(s string) (segments int, encoding string) {
	if s == "" {
		return 0, EncodingGSM7
	}
	gsm := true
	for _, r := range s {
		if !gsmBasic[r] && !gsmExt[r] {
			gsm = false
			break
		}
	}
	if gsm {
		septets := 0
		for _, r := range s {
			septets++
			if gsmExt[r] {
				septets++
			}
		}
		if septets <= smsGSMSingle {
			return 1, EncodingGSM7
		}
		// pack into parts without splitting an escape pair
		parts, used := 1, 0
		for _, r := range s {
			n := 1
			if gsmExt[r] {
				n = 2
			}
			if used+n > smsGSMPart {
				parts++
				used = 0
			}
			used += n
		}
		return parts, EncodingGSM7
	}
	units := 0
	for _, r := range s {
		units += utf16.RuneLen(r)
	}
	if units <= smsUCS2Single {
		return 1, EncodingUCS2
	}
	parts, used := 1, 0
	for _, r := range s {
		n := 1
		if r >= 0x10000 {
			n = 2
		}
		if used+n > smsUCS2Part {
			parts++
			used = 0
		}
		used += n
	}
	return parts, EncodingUCS2
}
