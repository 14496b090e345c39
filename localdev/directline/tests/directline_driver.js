#!/usr/bin/env node
// Drives Microsoft's Direct Line client (botframework-directlinejs, unmodified, from node_modules)
// through a JSON-lines protocol, so Python tests can chat through any Direct Line server.
//
//   node localdev/directline/tests/directline_driver.js --domain http://127.0.0.1:7072/v3/directline \
//        (--secret S | --token T) [--mode websocket|polling] [--user-id U] [--user-name N]
//        [--polling-interval MS] [--conversation-id ID] [--watermark W] [--retry-delay-ms MS]
//
// --conversation-id resumes a conversation (the client's GET /conversations/{id}), like a second tab.
// --retry-delay-ms replaces the client's 3-15 s random wait before it reconnects a closed WebSocket
// (the same override Microsoft's own tests make), so tests of reconnection do not wait for seconds.
//
// stdin, one JSON object per line:
//   {"cmd":"send","text":"hi","ref":"r1"}            a message (optional: channelData, locale)
//   {"cmd":"sendEvent","name":"n","value":...,"ref":"r2"}
//   {"cmd":"sendActivity","activity":{...},"ref":"r3"} any activity (from defaults to the user)
//   {"cmd":"end"}                                     end the client and exit (EOF does the same)
// stdout, one JSON object per line:
//   {"event":"status","status":N,"name":"Online"}    connectionStatus$ (0 Uninitialized .. 2 Online .. 5 Ended)
//   {"event":"posted","id":"...","ref":"r1"}         postActivity's answer ("retry" after a 5xx, as the client reports it)
//   {"event":"activity","activity":{...}}            every activity from activity$, the user's own echoes included
//   {"event":"error","message":"...","status":N,"ref":"r1"}
//   {"event":"socket","state":"open"} / {"event":"socket","state":"close","code":N,"reason":"..."}
//                                                    each WebSocket the client opens, as the socket saw it
//   {"event":"ended"}
'use strict';

const readline = require('readline');

function parseArgs(argv) {
  const args = { mode: 'websocket', userId: 'user1', userName: undefined, pollingInterval: 200 };
  const names = {
    '--mode': 'mode', '--domain': 'domain', '--secret': 'secret', '--token': 'token', '--user-id': 'userId',
    '--user-name': 'userName', '--polling-interval': 'pollingInterval', '--conversation-id': 'conversationId',
    '--watermark': 'watermark', '--retry-delay-ms': 'retryDelayMs',
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = names[argv[i]];
    if (!key || argv[i + 1] === undefined) throw new Error(`bad argument: ${argv[i]}`);
    args[key] = argv[i + 1];
  }
  if (!args.domain || !(args.secret || args.token)) throw new Error('--domain and --secret or --token are required');
  if (!['websocket', 'polling'].includes(args.mode)) throw new Error('--mode is websocket or polling');
  args.pollingInterval = Number(args.pollingInterval);
  return args;
}

const emit = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
// stdout carries the protocol only: anything a library logs goes to stderr.
console.log = (...items) => console.error(...items);

let args;
try {
  args = parseArgs(process.argv.slice(2));
} catch (err) {
  emit({ event: 'error', message: err.message });
  process.exit(2);
}

// The client was written for browsers: rxjs's ajax needs XMLHttpRequest, and the client reads a
// global WebSocket (Node 20 has none) even when polling; `webSocket: false` below picks polling.
global.XMLHttpRequest = require('xhr2');
// The socket events are reported from listeners of their own; the client's onopen/onclose stay its own.
global.WebSocket = class ReportingWebSocket extends require('ws') {
  constructor(...args) {
    super(...args);
    this.addEventListener('open', () => emit({ event: 'socket', state: 'open' }));
    this.addEventListener('close', (e) => emit({ event: 'socket', state: 'close', code: e.code, reason: e.reason }));
  }
};
const { DirectLine, ConnectionStatus } = require('botframework-directlinejs');

const directLine = new DirectLine({
  domain: args.domain,
  secret: args.secret,
  token: args.token,
  webSocket: args.mode === 'websocket',
  pollingInterval: args.pollingInterval,
  conversationId: args.conversationId,
  watermark: args.watermark,
});
if (args.retryDelayMs !== undefined) directLine.getRetryDelay = () => Number(args.retryDelayMs);
// The client refuses ids with the dl_ prefix here (they must be inside a token); from.id still carries it.
if (!/^dl_/.test(args.userId)) directLine.setUserId(args.userId);
const from = { id: args.userId, ...(args.userName ? { name: args.userName } : {}), role: 'user' };

directLine.connectionStatus$.subscribe((status) => emit({ event: 'status', status, name: ConnectionStatus[status] }));
directLine.activity$.subscribe(
  (activity) => emit({ event: 'activity', activity }),
  (err) => emit({ event: 'error', message: `activity$ failed: ${err && err.message}`, status: err && err.status }),
);

function post(activity, ref) {
  directLine.postActivity({ from, ...activity }).subscribe(
    (id) => emit({ event: 'posted', id, ref }),
    (err) => emit({ event: 'error', message: `postActivity failed: ${err && err.message}`, status: err && err.status, ref }),
  );
}

function end() {
  directLine.end();
  emit({ event: 'ended' });
  process.exit(0); // stdout to a pipe is synchronous on Linux: everything above is written
}

const commands = {
  send: (c) => post({ type: 'message', text: c.text, channelData: c.channelData, locale: c.locale }, c.ref),
  sendEvent: (c) => post({ type: 'event', name: c.name, value: c.value }, c.ref),
  sendActivity: (c) => post(c.activity || {}, c.ref),
  end,
};

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  if (!line.trim()) return;
  let command;
  try {
    command = JSON.parse(line);
  } catch (err) {
    emit({ event: 'error', message: `not JSON: ${line}` });
    return;
  }
  const handler = commands[command.cmd];
  if (!handler) emit({ event: 'error', message: `unknown cmd: ${command.cmd}`, ref: command.ref });
  else handler(command);
}).on('close', end);
