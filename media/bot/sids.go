package bot

// TwilioCallSID returns the callSid ("CA" and 32 hex digits) that the
// twilio dialect sends for the WhatsApp call callID. It is stable, so a
// bot's hang-up through the Twilio REST API names the call it came from.
func TwilioCallSID(callID string) string { return twilioSID("CA", "callSid", callID) }

// TwilioAccountSID returns the accountSid ("AC" and 32 hex digits) that the
// twilio dialect sends for the business phone number id phoneNumberID.
func TwilioAccountSID(phoneNumberID string) string {
	return twilioSID("AC", "accountSid", phoneNumberID)
}
