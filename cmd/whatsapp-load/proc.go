package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"unsafe"
)

// defaultClockTicks is USER_HZ on every mainstream Linux build, used when
// the auxiliary vector cannot be read.
const defaultClockTicks = 100

// atClockTick is AT_CLKTCK, the auxiliary vector entry that carries USER_HZ;
// glibc's sysconf(_SC_CLK_TCK) reads it from there.
const atClockTick = 17

// procSample is a process's CPU time and resident memory at one instant.
type procSample struct {
	cpuTicks uint64 // utime + stime, in clock ticks
	rssKiB   int64  // VmRSS
}

// readProc samples /proc/<pid>/stat and /proc/<pid>/status.
func readProc(pid int) (procSample, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return procSample{}, fmt.Errorf("pid %d: %w", pid, ErrNoProcess)
		}
		return procSample{}, fmt.Errorf("read stat of pid %d: %w", pid, err)
	}
	utime, stime, err := parseStat(stat)
	if err != nil {
		return procSample{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return procSample{}, fmt.Errorf("read status of pid %d: %w", pid, err)
	}
	rss, err := parseVmRSS(status)
	if err != nil {
		return procSample{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	return procSample{cpuTicks: utime + stime, rssKiB: rss}, nil
}

// parseStat returns utime and stime (fields 14 and 15, in clock ticks) of a
// /proc/<pid>/stat line. The command name (field 2) is parenthesised and may
// hold spaces and parentheses, so fields are counted after the last ")".
func parseStat(b []byte) (utime, stime uint64, err error) {
	end := bytes.LastIndexByte(b, ')')
	if end < 0 {
		return 0, 0, fmt.Errorf("%w: stat has no command name", ErrMalformedProc)
	}
	fields := strings.Fields(string(b[end+1:]))
	// fields[0] is field 3 (state), so field n is fields[n-3].
	const utimeField, stimeField = 14 - 3, 15 - 3
	if len(fields) <= stimeField {
		return 0, 0, fmt.Errorf("%w: stat has %d fields after the name", ErrMalformedProc, len(fields))
	}
	if utime, err = strconv.ParseUint(fields[utimeField], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("%w: utime: %w", ErrMalformedProc, err)
	}
	if stime, err = strconv.ParseUint(fields[stimeField], 10, 64); err != nil {
		return 0, 0, fmt.Errorf("%w: stime: %w", ErrMalformedProc, err)
	}
	return utime, stime, nil
}

// parseVmRSS returns the VmRSS line of /proc/<pid>/status in KiB.
func parseVmRSS(b []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("%w: VmRSS line %q", ErrMalformedProc, sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: VmRSS: %w", ErrMalformedProc, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%w: no VmRSS line (kernel thread or zombie?)", ErrMalformedProc)
}

// parseAuxv returns the value of entry key in an auxiliary vector as found
// in /proc/self/auxv: native-endian (type, value) pairs of machine words,
// ended by AT_NULL.
func parseAuxv(b []byte, key uint64) (uint64, bool) {
	word := int(unsafe.Sizeof(uintptr(0)))
	read := func(p []byte) uint64 {
		if word == 4 {
			return uint64(binary.NativeEndian.Uint32(p))
		}
		return binary.NativeEndian.Uint64(p)
	}
	for i := 0; i+2*word <= len(b); i += 2 * word {
		k, v := read(b[i:]), read(b[i+word:])
		if k == 0 {
			break
		}
		if k == key {
			return v, true
		}
	}
	return 0, false
}

// clockTicks returns USER_HZ, the unit of utime and stime, from the
// process's auxiliary vector (as sysconf(_SC_CLK_TCK) does), or 100.
var clockTicks = sync.OnceValue(func() uint64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return defaultClockTicks
	}
	if hz, ok := parseAuxv(b, atClockTick); ok && hz > 0 {
		return hz
	}
	return defaultClockTicks
})

// parseUDPRcvbufErrors returns the Udp RcvbufErrors counter of a
// /proc/net/snmp file: datagrams dropped because a socket's receive buffer
// was full.
func parseUDPRcvbufErrors(b []byte) (uint64, error) {
	var header []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != "Udp:" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i, name := range header {
			if name == "RcvbufErrors" && i < len(f) {
				n, err := strconv.ParseUint(f[i], 10, 64)
				if err != nil {
					return 0, fmt.Errorf("%w: RcvbufErrors: %w", ErrMalformedProc, err)
				}
				return n, nil
			}
		}
		break
	}
	return 0, fmt.Errorf("%w: no Udp RcvbufErrors in snmp", ErrMalformedProc)
}

// readUDPRcvbufErrors reads the host's UDP receive-buffer drops.
func readUDPRcvbufErrors() (uint64, error) {
	b, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, fmt.Errorf("read snmp: %w", err)
	}
	return parseUDPRcvbufErrors(b)
}
