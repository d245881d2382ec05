// A real third-party voice bot for the interop test: the OpenAI Agents SDK's
// Twilio transport (TwilioRealtimeTransportLayer in a RealtimeSession), as a
// Twilio Media Streams WebSocket server, talking to a fake of the OpenAI
// Realtime API in this same process.
//
// The fake Realtime API streams its answer far faster than real time, as
// real TTS does: 20 s of a 600 Hz tone (mu-law) in 100 ms deltas every
// 10 ms, as soon as the caller's audio arrives. On "barge" (a line on
// stdin) it reports input_audio_buffer.speech_started, to which the SDK
// answers with a Twilio clear and a conversation.item.truncate.
//
// Everything observable is reported as one JSON line on stdout, with the
// wall-clock time in ms ("at"), for integration/interop_test.go:
//   listening {port}             the Twilio-side server is up
//   twilio {type, ...}           a message from the module (start, media count, mark, dtmf, stop)
//   sent {type}                  a message from the SDK to the module (clear, mark, media count)
//   caller_audio {rms}           the fake Realtime API heard the caller (RMS over 200 ms of input)
//   answer_started / answer_sent the fake began / finished streaming its answer
//   truncate {audio_end_ms}      the SDK truncated the answer after the clear
//   twilio_closed                the module closed the Twilio socket
// A DTMF "#" from the caller makes the bot hang up (it closes the socket).
import { createInterface } from 'node:readline';
import { WebSocketServer } from 'ws';
import { RealtimeAgent, RealtimeSession } from '@openai/agents/realtime';
import { TwilioRealtimeTransportLayer } from '@openai/agents-extensions';

const report = (event, fields = {}) =>
  process.stdout.write(JSON.stringify({ event, at: Date.now(), ...fields }) + '\n');

// G.711 mu-law, for the fake's tone and its check of the caller's audio.
function ulawEncode(s) {
  const BIAS = 0x84;
  let sign = 0;
  if (s < 0) { sign = 0x80; s = -s; }
  s = Math.min(s, 32635) + BIAS;
  let exp = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exp > 0; mask >>= 1) exp--;
  return ~(sign | (exp << 4) | ((s >> (exp + 3)) & 0x0f)) & 0xff;
}
function ulawDecode(u) {
  u = ~u & 0xff;
  const t = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
  return u & 0x80 ? 0x84 - t : t - 0x84;
}

// --- the fake OpenAI Realtime API -------------------------------------------

const ANSWER_MS = 20000;
const DELTA_MS = 100;
const DELTA_EVERY_MS = 10; // 10x real time

const realtime = new WebSocketServer({ host: '127.0.0.1', port: 0 });
realtime.on('connection', (ws) => {
  let n = 0;
  const id = (p) => `${p}_${++n}`;
  const send = (ev) => ws.readyState === ws.OPEN && ws.send(JSON.stringify({ event_id: id('evt'), ...ev }));
  let heard = [];
  let answering = null;
  let responseId = null;
  const itemId = id('item');

  send({ type: 'session.created', session: { id: id('sess'), object: 'realtime.session', type: 'realtime' } });

  const answer = () => {
    responseId = id('resp');
    send({ type: 'response.created', response: { id: responseId, object: 'realtime.response', status: 'in_progress', output: [] } });
    report('answer_started');
    const samples = (8000 * DELTA_MS) / 1000;
    let sent = 0;
    answering = setInterval(() => {
      if (sent >= ANSWER_MS) {
        clearInterval(answering);
        answering = null;
        send({ type: 'response.output_audio.done', item_id: itemId, content_index: 0, output_index: 0, response_id: responseId });
        send({ type: 'response.done', response: { id: responseId, object: 'realtime.response', status: 'completed', output: [] } });
        report('answer_sent', { ms: sent });
        return;
      }
      const delta = Buffer.alloc(samples);
      for (let i = 0; i < samples; i++) {
        const k = (sent * 8) + i;
        delta[i] = ulawEncode(Math.round(8000 * Math.sin((2 * Math.PI * 600 * k) / 8000)));
      }
      send({
        type: 'response.output_audio.delta', item_id: itemId, content_index: 0, output_index: 0,
        response_id: responseId, delta: delta.toString('base64'),
      });
      sent += DELTA_MS;
    }, DELTA_EVERY_MS);
  };

  ws.on('message', (data) => {
    let ev;
    try { ev = JSON.parse(data.toString()); } catch { return; }
    switch (ev.type) {
      case 'session.update':
        send({ type: 'session.updated', session: { ...(ev.session ?? {}), id: id('sess'), object: 'realtime.session' } });
        break;
      case 'input_audio_buffer.append': {
        const b = Buffer.from(ev.audio ?? '', 'base64');
        for (const u of b) heard.push(ulawDecode(u));
        if (heard.length >= 1600) {
          const rms = Math.sqrt(heard.reduce((a, x) => a + x * x, 0) / heard.length);
          heard = [];
          if (rms > 1000) {
            report('caller_audio', { rms: Math.round(rms) });
            if (responseId === null) answer();
          }
        }
        break;
      }
      case 'conversation.item.truncate':
        report('truncate', { audio_end_ms: ev.audio_end_ms, item_id: ev.item_id });
        break;
      case 'response.cancel':
        if (answering) {
          clearInterval(answering);
          answering = null;
        }
        report('response_cancelled');
        break;
      default:
        break;
    }
  });
  ws.on('close', () => answering && clearInterval(answering));

  bargeHandlers.add(() => {
    // The caller speaks over the answer: stop streaming, as the real API
    // does with interrupt_response, and report speech_started.
    if (answering) {
      clearInterval(answering);
      answering = null;
    }
    send({ type: 'input_audio_buffer.speech_started', item_id: id('item'), audio_start_ms: 0 });
    report('speech_started');
  });
});
const bargeHandlers = new Set();

// --- the bot: Twilio Media Streams server running the SDK's transport ------

await new Promise((resolve) => realtime.once('listening', resolve));
const realtimeURL = `ws://127.0.0.1:${realtime.address().port}/v1/realtime`;

const twilio = new WebSocketServer({ host: '127.0.0.1', port: 0 });
twilio.on('connection', async (ws) => {
  // Report what the SDK sends to the module.
  const origSend = ws.send.bind(ws);
  let mediaSent = 0;
  ws.send = (data, ...rest) => {
    try {
      const m = JSON.parse(data.toString());
      if (m.event === 'media') {
        if (++mediaSent === 1) report('sent', { type: 'media' });
      } else {
        report('sent', { type: m.event });
      }
    } catch { /* not JSON */ }
    return origSend(data, ...rest);
  };
  let mediaIn = 0;
  ws.on('message', (data) => {
    let m;
    try { m = JSON.parse(data.toString()); } catch { return; }
    switch (m.event) {
      case 'media':
        if (++mediaIn === 1 || mediaIn % 50 === 0) report('twilio', { type: 'media', count: mediaIn, timestamp: m.media?.timestamp });
        break;
      case 'mark':
        report('twilio', { type: 'mark', name: m.mark?.name });
        break;
      case 'dtmf':
        report('twilio', { type: 'dtmf', digit: m.dtmf?.digit });
        if (m.dtmf?.digit === '#') {
          report('hanging_up');
          ws.close(1000, 'bye');
        }
        break;
      case 'start':
        report('twilio', { type: 'start', mediaFormat: m.start?.mediaFormat, streamSid: m.streamSid });
        break;
      default:
        report('twilio', { type: m.event });
    }
  });
  ws.on('close', () => report('twilio_closed'));

  const transport = new TwilioRealtimeTransportLayer({ twilioWebSocket: ws, url: realtimeURL });
  const agent = new RealtimeAgent({ name: 'interop', instructions: 'Answer at length.' });
  const session = new RealtimeSession(agent, { transport, config: { audio: { output: { voice: 'verse' } } } });
  session.on('error', (e) => report('sdk_error', { error: String(e?.error?.message ?? e?.error ?? e) }));
  try {
    await session.connect({ apiKey: 'test' });
    report('sdk_connected');
  } catch (e) {
    report('sdk_error', { error: String(e) });
  }
});
await new Promise((resolve) => twilio.once('listening', resolve));
report('listening', { port: twilio.address().port });

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() === 'barge') for (const h of bargeHandlers) h();
});
process.stdin.on('end', () => process.exit(0));
