package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/testenv"
	"github.com/herald-dev/herald/segments"
)

// contacts import with Telegram and LINE columns, contacts show by each identity, and
// contacts erase by a chat id, against real Redis and kfake.
func TestContactsShowChannelIdentities(t *testing.T) {
	_, prefix := testenv.Redis(t)
	brokers, topics := testenv.Kafka(t, 1)
	global := []string{"--redis-url", "redis://" + testenv.RedisAddr(t) + "/0", "--redis-prefix", prefix,
		"--kafka-brokers", strings.Join(brokers, ","), "--topic-prefix", strings.TrimSuffix(topics.Events, "events")}
	cmd := func(args ...string) (int, string, string) {
		return run(append(append([]string{}, global...), args...)...)
	}
	const lineID = "U4af4980629d8ef6e1cc5d5a27e6bf99c"
	file := filepath.Join(t.TempDir(), "chat.csv")
	csv := "phone,telegram,line,name\n+66 81 750 0001,123456789," + strings.ToUpper(lineID) + ",Ann\n,-100200,,Group\n,1.23457E+11,,Excel\n"
	if err := os.WriteFile(file, []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := cmd("--output", "json", "contacts", "import", file)
	var rep segments.ImportReport
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Created != 2 || rep.Rejected != 1 || rep.Rejects[0].Reason != "invalid telegram chat id" {
		t.Fatalf("contacts import: exit %d\n%s%s", code, out, errOut)
	}
	var ann segments.Contact
	code, out, errOut = cmd("--output", "json", "contacts", "show", "line:"+lineID)
	if code != 0 || json.Unmarshal([]byte(out), &ann) != nil || ann.TelegramChatID != "123456789" || ann.LineUserID != lineID || ann.Phone != "+66817500001" {
		t.Fatalf("contacts show line: exit %d\n%s%s", code, out, errOut)
	}
	for _, key := range []string{"telegram:123456789", "+66817500001", "#1"} {
		code, out, errOut := cmd("contacts", "show", key)
		if code != 0 || !strings.Contains(out, "telegram_chat_id  123456789") || !strings.Contains(out, "line_user_id      "+lineID) {
			t.Fatalf("contacts show %s: exit %d\n%s%s", key, code, out, errOut)
		}
	}
	if code, out, errOut := cmd("contacts", "erase", "telegram:123456789"); code != 0 || !strings.Contains(out, "erased contact 1") {
		t.Fatalf("contacts erase: %d\n%s%s", code, out, errOut)
	}
	for _, key := range []string{"line:" + lineID, "telegram:123456789", "#1", "telegram:x", "#0"} {
		if code, _, errOut := cmd("contacts", "show", key); code != 2 {
			t.Errorf("contacts show %s after erasure: exit %d %s", key, code, errOut)
		}
	}
	if code, out, _ := cmd("contacts", "show", "telegram:-100200"); code != 0 || !strings.Contains(out, "Group") {
		t.Fatalf("the group: %d %s", code, out)
	}
}
