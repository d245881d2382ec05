package bot

import "errors"

// Errors that callers may match with errors.Is.
var (
	// ErrUnknownProtocol is returned by ParseProtocol and Dial for a dialect name
	// other than "twilio" or "vonage".
	ErrUnknownProtocol = errors.New("unknown bot protocol")

	// ErrSampleRate is returned by Dial for a sample rate the dialect does not
	// support: Twilio is 8000 Hz only, Vonage is 8000, 16000 or 24000 Hz.
	ErrSampleRate = errors.New("unsupported bot sample rate")

	// ErrInvalidURL is returned by Dial for a bot URL that is not an absolute
	// ws:// or wss:// URL.
	ErrInvalidURL = errors.New("invalid bot url")

	// ErrInvalidParam is returned by Dial for a Param with an empty name or a
	// name that repeats another parameter (built-in or extra).
	ErrInvalidParam = errors.New("invalid bot parameter")

	// ErrBotUnreachable is returned by Dial when no WebSocket connection could
	// be established within Config.DialTimeout.
	ErrBotUnreachable = errors.New("bot unreachable")

	// ErrBotHangup is wrapped by the error ReadEvent returns when the bot closed
	// the WebSocket (with any close status) or the connection dropped.
	ErrBotHangup = errors.New("bot hung up")

	// ErrClosed is returned by every method of a Conn after Close was called.
	ErrClosed = errors.New("bot connection closed")

	// ErrMessageTooBig is wrapped by the error ReadEvent returns when the bot
	// sent a message larger than Config.ReadLimit. The connection is then closed
	// with status 1009 (message too big).
	ErrMessageTooBig = errors.New("bot message too big")

	// ErrWriteQueueFull is returned by the Write methods, and then by
	// ReadEvent, when the bot reads so slowly that more messages are waiting
	// for it than the Conn queues (at least 5 s of audio). The connection
	// is cut.
	ErrWriteQueueFull = errors.New("bot write queue full")

	// ErrFrameSize is returned by WriteAudio when the PCM slice is not exactly
	// one 20 ms frame (Conn.FrameSamples samples).
	ErrFrameSize = errors.New("audio is not one 20 ms frame")

	// ErrInvalidDigit is returned by WriteDTMF for anything but one of
	// 0-9, *, #, A-D.
	ErrInvalidDigit = errors.New("invalid dtmf digit")
)
