package main

import "errors"

// Sentinel errors of the load tool.
var (
	// ErrNotLoopback is returned for a target, listen address or URL that is
	// not on loopback (127.0.0.0/8, ::1 or "localhost"): the tool never sends
	// traffic anywhere else.
	ErrNotLoopback = errors.New("not a loopback address")
	// ErrNoProcess is returned when -pid names no readable process.
	ErrNoProcess = errors.New("no such process")
	// ErrMalformedProc is returned when a /proc file does not have the
	// expected shape.
	ErrMalformedProc = errors.New("malformed /proc file")
	// ErrSetup is returned (wrapped) when a call fails before it is
	// established.
	ErrSetup = errors.New("call setup failed")
)
