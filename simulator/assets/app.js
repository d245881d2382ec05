// WhatsApp call simulator page: places a call to whatsapp_calls through the
// simulator's API, the way the WhatsApp app would through Meta, and rings
// when the business calls (a business-initiated call placed through
// whatsapp_calls_api), with Answer and Decline.
//
// Add ?processing=off to the URL to turn off the browser's echo
// cancellation, noise suppression and gain control (tests use it, so that a
// steady test tone is not filtered out).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  const processing = params.get('processing') !== 'off';

  // simState is the page's state, read by tests.
  const sim = {
    state: 'idle', // idle, starting, ringing, pre_accepted, incoming, accepted, rejected, ended, failed
    direction: '', // user (the page called) or business (the business called the page)
    reason: '',
    by: '', // who ended the call: business or caller
    states: [], // every state this call went through
    callId: '',
    micLevel: 0, // RMS of the microphone, 0..1
    botLevel: 0, // RMS of the bot's audio, 0..1
    botPeakHz: 0, // strongest frequency of the bot's audio while it is audible
    botEnergy: 0, // getStats totalAudioEnergy of the received audio
    packetsReceived: 0,
    packetsSent: 0,
    dtmfSent: '',
    canInsertDTMF: false,
    pcState: 'new',
    error: '',
  };
  window.simState = sim;

  const labels = {
    idle: 'Ready to call',
    starting: 'Starting…',
    ringing: 'Ringing…',
    pre_accepted: 'Connecting…',
    incoming: 'The business is calling…',
    accepted: 'In call',
    rejected: 'Call declined',
    ended: 'Call ended',
    failed: 'Call failed',
  };
  const finalStates = new Set(['rejected', 'ended', 'failed']);
  const liveStates = new Set(['starting', 'ringing', 'pre_accepted', 'incoming', 'accepted']);

  let pc = null;
  let stream = null;
  let events = null;
  let audioCtx = null;
  let micAnalyser = null;
  let botAnalyser = null;
  let meterTimer = 0;
  let statsTimer = 0;
  let clockTimer = 0;
  let acceptedAt = 0;
  let haveAnswer = false;
  let hangingUp = false;
  let generation = 0; // increments per call, so late answers of an old call are ignored
  let incomingOffer = ''; // the business's offer of a business-initiated call
  const seenIncoming = new Set();

  function reasonText(state, reason, by) {
    if (state === 'ended' && by === 'business') return 'the business hung up';
    if (state === 'ended' && by === 'caller') return 'you hung up';
    if (state === 'rejected' && by === 'caller') return 'you declined the call';
    if (state === 'rejected') return 'the business declined the call';
    return reason || '';
  }

  function setState(state, reason = '', by = '') {
    if (finalStates.has(sim.state) && state !== 'starting' && state !== 'incoming') return; // a final state stays until the next call
    sim.state = state;
    sim.reason = reason;
    sim.by = by;
    sim.states.push(state);
    $('state').textContent = labels[state] || state;
    $('state').dataset.state = state;
    $('phone').dataset.state = state;
    $('reason').textContent = reasonText(state, reason, by);
    const live = liveStates.has(state);
    $('call').disabled = live;
    $('hangup').disabled = !live || state === 'incoming';
    $('incoming').hidden = state !== 'incoming';
    for (const b of document.querySelectorAll('#keypad button')) {
      b.disabled = state !== 'accepted' && state !== 'pre_accepted';
    }
    if (state === 'accepted' && !acceptedAt) {
      acceptedAt = Date.now();
      clockTimer = setInterval(tick, 500);
    }
    if (finalStates.has(state)) teardown();
  }

  function tick() {
    const s = Math.floor((Date.now() - acceptedAt) / 1000);
    $('timer').textContent = `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
  }

  function showError(err) {
    sim.error = String(err && err.message ? err.message : err);
    $('error').textContent = sim.error;
  }

  function waitForGathering(conn, ms) {
    return new Promise((resolve) => {
      if (conn.iceGatheringState === 'complete') {
        resolve();
        return;
      }
      const timer = setTimeout(done, ms);
      function check() {
        if (conn.iceGatheringState === 'complete') done();
      }
      function done() {
        clearTimeout(timer);
        conn.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
      conn.addEventListener('icegatheringstatechange', check);
    });
  }

  function newAnalyser(source) {
    const a = audioCtx.createAnalyser();
    a.fftSize = 2048;
    a.smoothingTimeConstant = 0;
    source.connect(a);
    return a;
  }

  const timeData = new Float32Array(2048);
  const freqData = new Float32Array(1024);

  function rms(a) {
    a.getFloatTimeDomainData(timeData);
    let sum = 0;
    for (let i = 0; i < timeData.length; i++) sum += timeData[i] * timeData[i];
    return Math.sqrt(sum / timeData.length);
  }

  function peakHz(a) {
    a.getFloatFrequencyData(freqData);
    let best = -Infinity;
    let bin = 0;
    for (let i = 2; i < freqData.length; i++) {
      if (freqData[i] > best) {
        best = freqData[i];
        bin = i;
      }
    }
    return Math.round((bin * audioCtx.sampleRate) / a.fftSize);
  }

  // meterWidth maps an RMS level to a bar width: -60 dBFS to 0 dBFS.
  function meterWidth(level) {
    if (level <= 0) return '0%';
    const db = 20 * Math.log10(level);
    return `${Math.max(0, Math.min(100, ((db + 60) / 60) * 100))}%`;
  }

  function updateMeters() {
    sim.micLevel = micAnalyser ? rms(micAnalyser) : 0;
    sim.botLevel = botAnalyser ? rms(botAnalyser) : 0;
    if (botAnalyser && sim.botLevel > 0.005) sim.botPeakHz = peakHz(botAnalyser);
    $('mic-meter').style.width = meterWidth(sim.micLevel);
    $('bot-meter').style.width = meterWidth(sim.botLevel);
  }

  async function updateStats() {
    if (!pc) return;
    const stats = await pc.getStats();
    stats.forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') {
        sim.botEnergy = r.totalAudioEnergy || 0;
        sim.packetsReceived = r.packetsReceived || 0;
      }
      if (r.type === 'outbound-rtp' && r.kind === 'audio') sim.packetsSent = r.packetsSent || 0;
    });
    const sender = audioSender();
    sim.canInsertDTMF = !!(sender && sender.dtmf && sender.dtmf.canInsertDTMF);
  }

  function audioSender() {
    return pc ? pc.getSenders().find((s) => s.track && s.track.kind === 'audio') : null;
  }

  function resetCall(direction) {
    Object.assign(sim, {
      callId: '', direction, states: [], error: '', dtmfSent: '', botPeakHz: 0, botEnergy: 0,
      packetsReceived: 0, packetsSent: 0, canInsertDTMF: false, pcState: 'new',
    });
    acceptedAt = 0;
    haveAnswer = false;
    $('timer').textContent = '00:00';
    $('dtmf-log').textContent = '';
    $('error').textContent = '';
    $('call-id').textContent = '-';
  }

  // startMedia opens the microphone and the peer connection of a call.
  async function startMedia(gen) {
    audioCtx = new AudioContext();
    await audioCtx.resume();
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: processing, noiseSuppression: processing, autoGainControl: processing },
    });
    if (gen !== generation || !liveStates.has(sim.state)) {
      for (const t of stream.getTracks()) t.stop(); // hung up meanwhile
      return false;
    }
    micAnalyser = newAnalyser(audioCtx.createMediaStreamSource(stream));
    pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
    pc.ontrack = (ev) => {
      const remote = ev.streams[0] || new MediaStream([ev.track]);
      $('remote-audio').srcObject = remote; // Chrome decodes remote audio only when it has a sink.
      botAnalyser = newAnalyser(audioCtx.createMediaStreamSource(remote));
    };
    pc.onconnectionstatechange = () => {
      if (!pc) return;
      sim.pcState = pc.connectionState;
      if (pc.connectionState === 'failed' && liveStates.has(sim.state)) {
        showError('media connection failed');
        hangUp();
      }
    };
    meterTimer = setInterval(updateMeters, 100);
    statsTimer = setInterval(() => updateStats().catch(() => {}), 250);
    return true;
  }

  // ring shows a business-initiated call: the first event of its stream
  // carries the business's offer.
  function ring(id) {
    const gen = ++generation;
    resetCall('business');
    incomingOffer = '';
    sim.callId = id;
    $('call-id').textContent = id;
    setState('incoming');
    events = new EventSource(`api/calls/${encodeURIComponent(id)}/events`);
    events.addEventListener('state', (msg) => {
      if (gen !== generation) return;
      const ev = JSON.parse(msg.data);
      if (ev.state === 'incoming') {
        if (ev.sdp) incomingOffer = ev.sdp;
        return;
      }
      setState(ev.state, ev.reason, ev.by);
    });
    events.onerror = () => {
      if (events && finalStates.has(sim.state)) events.close();
    };
  }

  async function answerCall() {
    const gen = generation;
    const id = sim.callId;
    if (sim.state !== 'incoming' || !incomingOffer) return;
    $('incoming').hidden = true;
    $('state').textContent = 'Connecting…';
    try {
      if (!(await startMedia(gen))) return;
      await pc.setRemoteDescription({ type: 'offer', sdp: incomingOffer });
      await pc.setLocalDescription(await pc.createAnswer());
      await waitForGathering(pc, 5000);
      const sdp = pc.localDescription.sdp;
      if (!sdp.includes('a=candidate:')) throw new Error('the browser gathered no ICE candidates');
      const res = await fetch(`api/calls/${encodeURIComponent(id)}/answer`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ sdp }),
      });
      if (!res.ok) {
        const body = await res.json().catch(() => ({}));
        throw new Error(body.error || `answering: HTTP ${res.status}`);
      }
    } catch (err) {
      if (gen !== generation) return;
      showError(err);
      setState('failed', sim.error);
    }
  }

  async function declineCall() {
    const id = sim.callId;
    if (sim.state !== 'incoming') return;
    try {
      await fetch(`api/calls/${encodeURIComponent(id)}/decline`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '{}',
      });
    } catch (err) {
      showError(err);
    }
    setState('rejected', 'declined', 'caller');
  }

  // pollIncoming looks for calls the business placed while the page is idle.
  async function pollIncoming() {
    if (liveStates.has(sim.state)) return;
    try {
      const res = await fetch('api/calls');
      const body = await res.json();
      for (const c of body.calls || []) {
        if (c.direction === 'BUSINESS_INITIATED' && c.state === 'incoming' && !seenIncoming.has(c.id)) {
          seenIncoming.add(c.id);
          if (!liveStates.has(sim.state)) ring(c.id);
        }
      }
    } catch (err) {
      // The next poll tries again.
    }
  }

  async function placeCall() {
    const gen = ++generation;
    resetCall('user');
    setState('starting');
    try {
      if (!(await startMedia(gen))) return;
      if (sim.state !== 'starting') return;

      await pc.setLocalDescription(await pc.createOffer());
      await waitForGathering(pc, 5000);
      const sdp = pc.localDescription.sdp;
      if (!sdp.includes('a=candidate:')) throw new Error('the browser gathered no ICE candidates');

      const res = await fetch('api/calls', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ sdp }),
      });
      const body = await res.json().catch(() => ({}));
      if (body.call_id) {
        $('call-id').textContent = body.call_id;
      }
      if (gen !== generation || sim.state !== 'starting') {
        // Hung up while the call was being placed.
        if (body.call_id) navigator.sendBeacon(`api/calls/${encodeURIComponent(body.call_id)}/hangup`);
        return;
      }
      sim.callId = body.call_id || '';
      if (!res.ok) throw new Error(body.error || `placing the call: HTTP ${res.status}`);
      listen(sim.callId, gen);
    } catch (err) {
      if (gen !== generation) return;
      showError(err);
      setState('failed', sim.error);
    }
  }

  function listen(id, gen) {
    events = new EventSource(`api/calls/${encodeURIComponent(id)}/events`);
    events.addEventListener('state', (msg) => {
      if (gen !== generation) return;
      const ev = JSON.parse(msg.data);
      if (ev.sdp && !haveAnswer && pc) {
        haveAnswer = true;
        pc.setRemoteDescription({ type: 'answer', sdp: ev.sdp }).catch((err) => {
          showError(`bad answer: ${err.message}`);
          hangUp();
        });
      }
      setState(ev.state, ev.reason, ev.by);
    });
    events.onerror = () => {
      if (events && finalStates.has(sim.state)) events.close();
    };
  }

  function teardown() {
    if (events) events.close();
    events = null;
    if (pc) pc.close();
    pc = null;
    if (stream) for (const t of stream.getTracks()) t.stop();
    stream = null;
    clearInterval(meterTimer);
    clearInterval(statsTimer);
    clearInterval(clockTimer);
    micAnalyser = null;
    botAnalyser = null;
    if (audioCtx) audioCtx.close().catch(() => {});
    audioCtx = null;
    sim.micLevel = 0;
    sim.botLevel = 0;
    $('mic-meter').style.width = '0%';
    $('bot-meter').style.width = '0%';
    $('remote-audio').srcObject = null;
  }

  // hangUp tells the simulator first, so that whatsapp_calls gets the
  // terminate webhook before the media stops, as with Meta, and then closes
  // the connection.
  async function hangUp() {
    const id = sim.callId;
    if (!liveStates.has(sim.state) || hangingUp) return;
    if (!id) {
      setState('ended', 'you hung up', 'caller'); // placeCall sends the hang-up when its request returns
      return;
    }
    hangingUp = true;
    $('hangup').disabled = true;
    $('state').textContent = 'Hanging up…';
    try {
      const res = await fetch(`api/calls/${encodeURIComponent(id)}/hangup`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: '{}',
      });
      if (!res.ok && res.status !== 409) {
        const body = await res.json().catch(() => ({}));
        showError(body.error || `hang up: HTTP ${res.status}`);
      }
    } catch (err) {
      showError(err);
    } finally {
      hangingUp = false;
      setState('ended', 'you hung up', 'caller');
    }
  }

  function press(digit) {
    const sender = audioSender();
    if (!sender || !sender.dtmf || !sender.dtmf.canInsertDTMF) {
      showError('DTMF is not available: the answer has no telephone-event, or media is not connected');
      return;
    }
    // insertDTMF replaces the queued tones, so append to them.
    sender.dtmf.insertDTMF(sender.dtmf.toneBuffer + digit, 120, 80);
    sim.dtmfSent += digit;
    $('dtmf-log').textContent = sim.dtmfSent;
  }

  $('call').addEventListener('click', () => placeCall());
  $('answer').addEventListener('click', () => answerCall());
  $('decline').addEventListener('click', () => declineCall());
  setInterval(pollIncoming, 1000);
  $('hangup').addEventListener('click', () => hangUp());
  for (const b of document.querySelectorAll('#keypad button')) {
    b.disabled = true;
    b.addEventListener('click', () => press(b.dataset.digit));
  }
  document.addEventListener('keydown', (ev) => {
    if (/^[0-9*#]$/.test(ev.key) && (sim.state === 'accepted' || sim.state === 'pre_accepted')) press(ev.key);
  });
  window.addEventListener('pagehide', () => {
    if (sim.callId && liveStates.has(sim.state)) {
      navigator.sendBeacon(`api/calls/${encodeURIComponent(sim.callId)}/hangup`);
    }
  });

  fetch('api/config')
    .then((r) => r.json())
    .then((cfg) => {
      $('business-name').textContent = `+${cfg.display_phone_number}`;
      $('business-number').textContent = `WhatsApp Business · id ${cfg.phone_number_id}`;
      $('caller').textContent = `${cfg.caller_name} (+${cfg.caller})`;
    })
    .catch((err) => showError(err));
})();
