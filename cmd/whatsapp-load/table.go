package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Labels the bench script gives its targets: Opus calls against the floor
// and Caddy, and PCMU passthrough calls against the PCMU floor and Caddy.
const (
	labelCaddy     = "caddy"
	labelFloor     = "floor"
	labelCaddyPCMU = "caddy-pcmu"
	labelFloorPCMU = "floor-pcmu"
)

// benchRow pairs the caddy and floor runs of one call count and codec.
type benchRow struct {
	n            int
	pcmu         bool
	caddy, floor *Report
}

// readResults parses JSON lines of Reports and OpusCosts. Blank lines and
// lines that are not JSON objects (such as human lines) are skipped.
func readResults(r io.Reader) (reports []Report, opus *OpusCost, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(text, "{") {
			continue
		}
		var k struct {
			Kind string `json:"kind"`
		}
		if err := json.Unmarshal([]byte(text), &k); err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", line, err)
		}
		switch k.Kind {
		case kindLoad:
			var rep Report
			if err := json.Unmarshal([]byte(text), &rep); err != nil {
				return nil, nil, fmt.Errorf("line %d: %w", line, err)
			}
			reports = append(reports, rep)
		case kindOpusCost:
			var o OpusCost
			if err := json.Unmarshal([]byte(text), &o); err != nil {
				return nil, nil, fmt.Errorf("line %d: %w", line, err)
			}
			opus = &o
		default:
			return nil, nil, fmt.Errorf("line %d: unknown kind %q", line, k.Kind)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("read results: %w", err)
	}
	return reports, opus, nil
}

// benchRows groups reports by codec and call count, the latest of each
// label winning: Opus rows first, then PCMU rows, each by N.
func benchRows(reports []Report) []benchRow {
	type key struct {
		pcmu bool
		n    int
	}
	byKey := map[key]*benchRow{}
	for i := range reports {
		rep := &reports[i]
		pcmu := rep.Label == labelCaddyPCMU || rep.Label == labelFloorPCMU
		k := key{pcmu, rep.Calls}
		row := byKey[k]
		if row == nil {
			row = &benchRow{n: rep.Calls, pcmu: pcmu}
			byKey[k] = row
		}
		switch rep.Label {
		case labelCaddy, labelCaddyPCMU:
			row.caddy = rep
		case labelFloor, labelFloorPCMU:
			row.floor = rep
		}
	}
	rows := make([]benchRow, 0, len(byKey))
	for _, r := range byKey {
		rows = append(rows, *r)
	}
	slices.SortFunc(rows, func(a, b benchRow) int {
		if a.pcmu != b.pcmu {
			if a.pcmu {
				return 1
			}
			return -1
		}
		return a.n - b.n
	})
	return rows
}

// overheadRatio is caddy's CPU per call over the floor's plus the Opus
// transcoding cost: how far whatsapp_calls is from the transport floor with
// the unavoidable codec work added. ok is false when a part is missing.
//
// For PCMU passthrough rows (opus nil) the floor is the pion echo alone.
func overheadRatio(caddy, floor *Report, opus *OpusCost) (float64, bool) {
	if caddy == nil || floor == nil || caddy.CPUCoresPerCall == nil || floor.CPUCoresPerCall == nil {
		return 0, false
	}
	den := *floor.CPUCoresPerCall
	if opus != nil {
		den += opus.CoresPerCall
	}
	if den <= 0 {
		return 0, false
	}
	return *caddy.CPUCoresPerCall / den, true
}

// addedLatency is the latency whatsapp_calls adds per direction: half the
// difference of the caddy and floor echo round trips (with the echo bot's
// delay near 0), at the median and at p99. ok is false when either run
// measured no round trip.
func addedLatency(caddy, floor *Report) (p50, p99 float64, ok bool) {
	if caddy == nil || floor == nil || caddy.EchoRTTMS.N == 0 || floor.EchoRTTMS.N == 0 {
		return 0, 0, false
	}
	return (caddy.EchoRTTMS.P50 - floor.EchoRTTMS.P50) / 2, (caddy.EchoRTTMS.P99 - floor.EchoRTTMS.P99) / 2, true
}

// rttCell renders a report's echo round trip as "p50/p99", n/a without
// probes, with the missed probes when there were any.
func rttCell(r *Report) string {
	if r.EchoRTTMS.N == 0 {
		return "n/a"
	}
	s := fmt.Sprintf("%.1f/%.1f", r.EchoRTTMS.P50, r.EchoRTTMS.P99)
	if r.EchoProbesMissed > 0 {
		s += fmt.Sprintf(", %d missed", r.EchoProbesMissed)
	}
	return s
}

// markdownTable renders the bench results: one row per codec and call
// count, plus a line for the 250-call target when it was run. The ratio is
// to the same run's floor: the pion echo plus the Opus codec cost for Opus
// rows, the pion echo alone for PCMU passthrough rows.
func markdownTable(reports []Report, opus *OpusCost) string {
	na := "n/a"
	f := func(v *float64, format string) string {
		if v == nil {
			return na
		}
		return fmt.Sprintf(format, *v)
	}
	var b strings.Builder
	b.WriteString("| codec | N | established | setup p50/p99 ms | received ratio | underruns | CPU cores/call (caddy) | CPU cores/call (floor) | opus cost cores/call | caddy/floor ratio | RSS/call KiB | echo RTT p50/p99 ms | added latency/direction p50/p99 ms | load tool + bot cores |\n")
	b.WriteString("| --- | ---: | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: | --- |\n")
	rows := benchRows(reports)
	for _, row := range rows {
		c, fl := row.caddy, row.floor
		codec, rowOpus := "opus", opus
		if row.pcmu {
			codec, rowOpus = "pcmu", nil
		}
		opusCell := na
		if rowOpus != nil {
			opusCell = fmt.Sprintf("%.5f", rowOpus.CoresPerCall)
		} else if row.pcmu {
			opusCell = "0"
		}
		est, setup, recv, under, cpuC, cpuF, rss, rtt, side := na, na, na, na, na, na, na, na, na
		if c != nil {
			est = fmt.Sprintf("%d/%d", c.Established, c.Calls)
			setup = fmt.Sprintf("%.0f/%.0f", c.AcceptMS.P50, c.AcceptMS.P99)
			recv = fmt.Sprintf("%.3f", c.ReceivedRatio)
			under = f(c.Underruns, "%.0f")
			cpuC = f(c.CPUCoresPerCall, "%.5f")
			rss = f(c.RSSPerCallKiB, "%.0f")
			rtt = rttCell(c)
			side = f(c.LoadCPUCores, "%.2f") + " + " + f(c.BotCPUCores, "%.2f")
		}
		if fl != nil {
			est += fmt.Sprintf(" (floor %d/%d)", fl.Established, fl.Calls)
			setup += fmt.Sprintf(" (floor %.0f/%.0f)", fl.AcceptMS.P50, fl.AcceptMS.P99)
			recv += fmt.Sprintf(" (floor %.3f)", fl.ReceivedRatio)
			cpuF = f(fl.CPUCoresPerCall, "%.5f")
			rss += " (floor " + f(fl.RSSPerCallKiB, "%.0f") + ")"
			rtt += " (floor " + rttCell(fl) + ")"
		}
		ratio := na
		if v, ok := overheadRatio(c, fl, rowOpus); ok && (rowOpus != nil || row.pcmu) {
			ratio = fmt.Sprintf("%.2f", v)
		}
		added := na
		if p50, p99, ok := addedLatency(c, fl); ok {
			added = fmt.Sprintf("%.1f/%.1f", p50, p99)
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", codec, row.n, est, setup, recv, under, cpuC, cpuF, opusCell, ratio, rss, rtt, added, side)
	}
	for _, row := range rows {
		if row.n != 250 || row.caddy == nil {
			continue
		}
		c := row.caddy
		codec := "opus"
		if row.pcmu {
			codec = "pcmu"
		}
		fmt.Fprintf(&b, "\n250-call target (%s): caddy established %d/%d", codec, c.Established, c.Calls)
		if c.TargetCPUCores != nil {
			fmt.Fprintf(&b, ", %.2f cores in total", *c.TargetCPUCores)
		}
		if c.RSSSteadyKiB != nil && c.RSSBeforeKiB != nil {
			fmt.Fprintf(&b, ", RSS +%.1f MiB (%.1f MiB total)", float64(*c.RSSSteadyKiB-*c.RSSBeforeKiB)/1024, float64(*c.RSSSteadyKiB)/1024)
		}
		fmt.Fprintf(&b, ", setup p99 %.0f ms, received ratio %.3f, underruns %s.\n", c.AcceptMS.P99, c.ReceivedRatio, f(c.Underruns, "%.0f"))
	}
	for _, row := range rows {
		for _, rep := range []*Report{row.caddy, row.floor} {
			if rep == nil {
				continue
			}
			drops := rep.UDPRcvbufErrors != nil && *rep.UDPRcvbufErrors > 0
			if rep.Note != "" || len(rep.Failures) > 0 || (rep.SendPace > 0 && rep.SendPace < 0.98) || drops {
				fmt.Fprintf(&b, "\nN=%d %s: send pace %.3f, load tool %s cores", row.n, rep.Label, rep.SendPace, f(rep.LoadCPUCores, "%.2f"))
				if drops {
					fmt.Fprintf(&b, ", %d UDP datagrams dropped on full receive buffers (host-wide)", *rep.UDPRcvbufErrors)
				}
				if len(rep.Failures) > 0 {
					fmt.Fprintf(&b, ", failures %v", rep.Failures)
				}
				if rep.Note != "" {
					fmt.Fprintf(&b, ", %s", rep.Note)
				}
				b.WriteString("\n")
			}
		}
	}
	return b.String()
}
