package media

import (
	"strings"
	"testing"

	wacaller "github.com/whatsappcalls/caddy-whatsapp-calls/internal/caller"
)

func TestParseOpusOffer(t *testing.T) {
	tests := []struct {
		name   string
		give   string
		want   opusOffer
		wantOK bool
	}{
		{
			name:   "meta captured",
			give:   wacaller.CapturedOffer,
			want:   opusOffer{payloadType: 111, maxAverageBitrate: 20000, maxPlaybackRate: 16000, useInbandFEC: true, ptime: 20, maxptime: 20},
			wantOK: true,
		},
		{
			name:   "case, order, spaces, every flag",
			give:   "m=audio 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 OPUS/48000/2\r\na=fmtp:96 USEDTX=1; Stereo=1;cbr=1 ;MaxAverageBitrate=12000;useinbandfec=0\r\n",
			want:   opusOffer{payloadType: 96, maxAverageBitrate: 12000, useDTX: true, stereo: true, cbr: true},
			wantOK: true,
		},
		{
			name:   "bad numbers ignored",
			give:   "m=audio 9 RTP/SAVPF 111\na=rtpmap:111 opus/48000/2\na=fmtp:111 maxplaybackrate=lots;maxaveragebitrate=-5\na=ptime:x\n",
			want:   opusOffer{payloadType: 111},
			wantOK: true,
		},
		{name: "no opus", give: "m=audio 9 RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n"},
		{name: "rejected section", give: "m=audio 0 RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseOpusOffer(tt.give)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("parseOpusOffer(%q) = %+v, %v; want %+v, %v", tt.name, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestSetOpusFmtp(t *testing.T) {
	const head = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111 126\r\na=rtpmap:111 opus/48000/2\r\n"
	tests := []struct {
		name    string
		give    string
		want    string
		wantErr bool
	}{
		{
			name: "replaced",
			give: head + "a=fmtp:111 minptime=20;maxaveragebitrate=20000\r\na=rtpmap:126 telephone-event/8000\r\n",
			want: head + "a=fmtp:111 X=1\r\na=rtpmap:126 telephone-event/8000\r\n",
		},
		{
			name: "added",
			give: head + "a=rtpmap:126 telephone-event/8000\r\n",
			want: head + "a=fmtp:111 X=1\r\na=rtpmap:126 telephone-event/8000\r\n",
		},
		{
			name: "fmtp before rtpmap, LF ends, other payload type",
			give: "m=audio 9 RTP/SAVPF 96\na=fmtp:96 stereo=1\na=rtpmap:96 opus/48000/2\na=fmtp:101 0-15\n",
			want: "m=audio 9 RTP/SAVPF 96\na=rtpmap:96 opus/48000/2\na=fmtp:96 X=1\na=fmtp:101 0-15\n",
		},
		{name: "no opus", give: "m=audio 9 RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := setOpusFmtp(tt.give, "X=1")
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("setOpusFmtp(%q) = %q, %v; want %q, error %v", tt.give, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestOnlySHA256Fingerprints(t *testing.T) {
	const head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\n"
	tests := []struct {
		name    string
		give    string
		want    string
		wantErr bool
	}{
		{
			name: "sha-256 only",
			give: head + "a=fingerprint:sha-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
			want: head + "a=fingerprint:sha-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
		},
		{
			name: "others removed",
			give: head + "a=fingerprint:sha-512 CC\r\na=fingerprint:SHA-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=fingerprint:sha-1 DD\r\n",
			want: head + "a=fingerprint:SHA-256 AA:BB\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
		},
		{name: "no sha-256", give: head + "a=fingerprint:sha-1 DD\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := onlySHA256Fingerprints(tt.give)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("onlySHA256Fingerprints(%q) = %q, %v; want %q, error %v", tt.give, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSDPHasOpus(t *testing.T) {
	tests := []struct {
		name string
		give string
		want bool
	}{
		{name: "opus", give: "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", want: true},
		{name: "rejected section", give: "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", want: false},
		{name: "pcmu only", give: "m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=rtpmap:0 PCMU/8000\r\n", want: false},
		{name: "opus in video", give: "m=video 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n", want: false},
		{name: "LF line ends", give: "m=audio 9 RTP/SAVPF 96\na=rtpmap:96 OPUS/48000/2\n", want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sdpHasOpus(tt.give); got != tt.want {
				t.Errorf("sdpHasOpus(%q) = %v; want %v", strings.TrimSpace(tt.give), got, tt.want)
			}
		})
	}
}
