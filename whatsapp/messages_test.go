package whatsapp

import (
	"encoding/json"
	"reflect"
	"testing"
)

// permissionReplyPayload is a messages webhook with a call permission reply,
// a text message and a message of an unexpected shape, as Meta batches them.
const permissionReplyPayload = `{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{
  "messaging_product":"whatsapp",
  "metadata":{"display_phone_number":"15550001111","phone_number_id":"106540352242922"},
  "contacts":[{"profile":{"name":"Jane"},"wa_id":"15551234567","user_id":"US.13491208655302741918"}],
  "messages":[
    {"context":{"from":"15550001111","id":"wamid.REQ"},"from":"15551234567","id":"wamid.REPLY1","timestamp":"1750000000","type":"interactive",
     "interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"accept","is_permanent":false,"expiration_timestamp":1750604800,"response_source":"user_action"}}},
    {"from":"15551234567","id":"wamid.TEXT","timestamp":"1750000001","type":"text","text":{"body":"hi"}},
    {"from":15551234567,"id":["odd"],"type":"interactive"},
    {"from_user_id":"US.999","id":"wamid.REPLY2","timestamp":1750000002,"type":"interactive",
     "interactive":{"type":"call_permission_reply","call_permission_reply":{"response":"reject","response_source":"automatic"}}}
  ]}}]}]}`

func TestPermissionReplies(t *testing.T) {
	w, err := ParseWebhook([]byte(permissionReplyPayload))
	if err != nil {
		t.Fatalf("ParseWebhook() = %v; want nil", err)
	}
	want := []PermissionReply{
		{
			PhoneNumberID: "106540352242922", MessageID: "wamid.REPLY1", From: "15551234567",
			FromUserID: "US.13491208655302741918", Timestamp: 1750000000,
			Reply: CallPermissionReply{Response: "accept", Expires: 1750604800, ResponseSource: "user_action"},
		},
		{
			PhoneNumberID: "106540352242922", MessageID: "wamid.REPLY2", FromUserID: "US.999", Timestamp: 1750000002,
			Reply: CallPermissionReply{Response: "reject", ResponseSource: "automatic"},
		},
	}
	got := w.PermissionReplies()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("PermissionReplies() = %+v\nwant %+v", got, want)
	}
	if !got[0].Accepted() || got[1].Accepted() {
		t.Errorf("Accepted() = %v, %v; want true, false", got[0].Accepted(), got[1].Accepted())
	}
	if len(w.CallEvents()) != 0 || len(w.CallStatuses()) != 0 {
		t.Errorf("a messages webhook yielded call events or statuses")
	}
	if got := (*Webhook)(nil).PermissionReplies(); got != nil {
		t.Errorf("(*Webhook)(nil).PermissionReplies() = %v; want nil", got)
	}
}

func TestStatusRecipientUserID(t *testing.T) {
	const payload = `{"entry":[{"changes":[{"field":"calls","value":{"statuses":[{"id":"wacid.OUT","type":"call","status":"RINGING",` +
		`"timestamp":"1750000000","recipient_user_id":"US.1","biz_opaque_callback_data":"r-7"}]}}]}]}`
	w, err := ParseWebhook([]byte(payload))
	if err != nil {
		t.Fatalf("ParseWebhook() = %v; want nil", err)
	}
	want := []Status{{ID: "wacid.OUT", Type: "call", Status: "RINGING", Timestamp: 1750000000, RecipientUserID: "US.1", BizOpaqueCallbackData: "r-7"}}
	if got := w.CallStatuses(); !reflect.DeepEqual(got, want) {
		b, _ := json.Marshal(got)
		t.Errorf("CallStatuses() = %s; want %+v", b, want)
	}
}
