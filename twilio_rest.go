package whatsappcalls

import (
	"crypto/subtle"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/whatsappcalls/caddy-whatsapp-calls/whatsapp"
)

// twilioPathPrefix starts the Twilio REST API's paths.
const twilioPathPrefix = "/2010-04-01/"

// Twilio error codes answered by the hang-up route
// (https://www.twilio.com/docs/errors).
const (
	twilioNotFound     = 20404 // the requested resource was not found
	twilioUnauthorized = 20003 // authentication failed
	twilioBadRequest   = 21218 // invalid parameter (here: a Status other than completed)
)

// twilioUpdateCall serves Twilio's call update,
//
//	POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json
//	Authorization: Basic base64(AccountSid:AuthToken)
//	Content-Type: application/x-www-form-urlencoded
//
//	Status=completed
//
// as pipecat's TwilioFrameSerializer sends it to hang up (auto_hang_up):
// it ends the live call whose twilio-dialect ids are AccountSid and
// CallSid (derived from the phone number id and the WhatsApp call id, as
// sent in the bot's start message) and answers with Twilio's call resource
// JSON. A call that has already ended is 404 with Twilio's code 20404,
// which pipecat takes as "already terminated".
func (a *API) twilioUpdateCall(w http.ResponseWriter, r *http.Request) {
	account := r.PathValue("account")
	callSID, ok := strings.CutSuffix(r.PathValue("call"), ".json")
	if !ok {
		writeTwilioError(w, http.StatusNotFound, twilioNotFound, "The requested resource was not found")
		return
	}
	user, pass, ok := r.BasicAuth()
	if !ok || user != account ||
		subtle.ConstantTimeCompare([]byte(pass), []byte(a.twilioToken)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="Twilio API"`)
		writeTwilioError(w, http.StatusUnauthorized, twilioUnauthorized, "Authenticate")
		return
	}
	if err := r.ParseForm(); err != nil {
		writeTwilioError(w, http.StatusBadRequest, twilioBadRequest, "Unreadable form body")
		return
	}
	if status := r.PostForm.Get("Status"); status != "completed" && status != "canceled" {
		writeTwilioError(w, http.StatusBadRequest, twilioBadRequest, "Status must be completed or canceled")
		return
	}
	for _, reg := range directory.registries() {
		c, ok := reg.findTwilio(account, callSID)
		if !ok {
			continue
		}
		c.hangup(errHungUpByBotREST)
		a.logger.Info("call hung up through the twilio rest api", zap.String("call_id", c.ev.Call.ID))
		writeJSON(w, http.StatusOK, twilioCall(c, account, callSID))
		return
	}
	// In a cluster the bot's hang-up may land on another node than the
	// call's: it is forwarded to the owner.
	ctx, cancel := contextWithTimeout(r, apiClusterBudget)
	defer cancel()
	if c, ok := clusterFindTwilio(ctx, account, callSID); ok {
		if owner := clusterHangup(ctx, c.ID, hangupTwilioREST); owner != "" {
			a.logger.Info("call hung up through the twilio rest api on another node",
				zap.String("call_id", c.ID), zap.String("node", owner))
			writeJSON(w, http.StatusOK, twilioResource(account, callSID, c.Started,
				c.Direction == whatsapp.DirectionBusinessInitiated))
			return
		}
	}
	writeTwilioError(w, http.StatusNotFound, twilioNotFound,
		"The requested resource /2010-04-01/Accounts/"+account+"/Calls/"+callSID+".json was not found")
}

// twilioCall is the part of Twilio's call resource that clients read.
func twilioCall(c *call, account, sid string) map[string]any {
	return twilioResource(account, sid, c.received, c.direction == directionOutbound)
}

// twilioResource is twilioCall for a call that started at started.
func twilioResource(account, sid string, started time.Time, outbound bool) map[string]any {
	now := time.Now().UTC().Format(time.RFC1123Z)
	direction := "inbound"
	if outbound {
		direction = "outbound-api"
	}
	return map[string]any{
		"sid":          sid,
		"account_sid":  account,
		"status":       "completed",
		"direction":    direction,
		"api_version":  "2010-04-01",
		"date_created": started.UTC().Format(time.RFC1123Z),
		"date_updated": now,
		"end_time":     now,
		"uri":          "/2010-04-01/Accounts/" + account + "/Calls/" + sid + ".json",
	}
}

// writeTwilioError answers in Twilio's error shape.
func writeTwilioError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{
		"code":      code,
		"message":   msg,
		"more_info": "https://www.twilio.com/docs/errors/" + strconv.Itoa(code),
		"status":    status,
	})
}
