#!/usr/bin/env node
// Runs the agent console's own script (GET /agent, unmodified) in Node against a stand-in DOM, so
// Python tests can click through the page without a browser. Only the DOM calls the page makes exist.
//
//   node localdev/directline/tests/agent_console_driver.js --url http://127.0.0.1:7072/ --key <console key>
//
// stdin, one JSON object per line:
//   {"cmd":"set","id":"agent-name","value":"Ada"}   type into an input (fires "change")
//   {"cmd":"click","id":"accept"}                    click a button by id
//   {"cmd":"select","conversationId":"..."}          click that handoff in the list on the left
//   {"cmd":"submit","id":"compose"}                  submit a form
//   {"cmd":"end"}                                    exit (EOF does the same)
// stdout, one JSON object per line:
//   {"event":"snapshot","page":{...}}   whenever what the page shows changes (checked every 50 ms):
//       elements by id {text, hidden, disabled, value, placeholder}, the lists' entries, the title
//   {"event":"error","message":"..."}
'use strict';

const readline = require('readline');

const emit = (message) => process.stdout.write(`${JSON.stringify(message)}\n`);
console.log = (...items) => console.error(...items);

const urlIndex = process.argv.indexOf('--url');
if (urlIndex < 0 || !process.argv[urlIndex + 1]) {
  emit({ event: 'error', message: '--url is required' });
  process.exit(2);
}
const base = process.argv[urlIndex + 1].replace(/\/?$/, '/');
const keyIndex = process.argv.indexOf('--key');
const consoleKey = keyIndex >= 0 ? process.argv[keyIndex + 1] || '' : '';

class FakeText {
  constructor(text) { this.textContent = String(text); this.children = []; }
}

class FakeElement {
  constructor(tagName, id) {
    Object.assign(this, { tagName, id: id || '', className: '', hidden: false, disabled: false, value: '',
      placeholder: '', title: '', open: false, scrollTop: 0, scrollHeight: 0, clientHeight: 0 });
    this.children = [];
    this.ownText = '';
    this.listeners = {};
  }
  get textContent() {
    return this.children.length ? this.children.map((child) => child.textContent).join('') : this.ownText;
  }
  set textContent(text) { this.children = []; this.ownText = String(text); }
  appendChild(child) { this.children.push(child); return child; }
  replaceChildren(...children) { this.children = children; this.ownText = ''; }
  addEventListener(type, listener) { (this.listeners[type] = this.listeners[type] || []).push(listener); }
  dispatch(type) {
    for (const listener of this.listeners[type] || []) listener({ type, target: this, preventDefault() {} });
  }
  focus() {}
  descendants() { return this.children.flatMap((child) => (child instanceof FakeElement ? [child, ...child.descendants()] : [])); }
}

async function main() {
  const html = await (await fetch(base + 'agent?key=' + encodeURIComponent(consoleKey))).text();
  const script = (html.match(/<script>([\s\S]*?)<\/script>/) || [])[1];
  if (!script) throw new Error('the page has no inline script');
  const elements = {};
  for (const match of html.matchAll(/<(\w+)[^>]*\sid="([^"]+)"([^>]*)>/g)) {
    const element = new FakeElement(match[1], match[2]);
    element.hidden = /\shidden(\s|$|>)/.test(match[0]);
    elements[match[2]] = element;
  }
  const title = (html.match(/<title>([^<]*)<\/title>/) || [])[1] || '';
  const storage = new Map();
  const document = {
    title,
    getElementById: (id) => elements[id] || null,
    createElement: (tag) => new FakeElement(tag),
    createTextNode: (text) => new FakeText(text),
  };
  const localStorage = { getItem: (key) => (storage.has(key) ? storage.get(key) : null), setItem: (key, value) => storage.set(key, String(value)) };
  // The page calls its API with absolute paths ("/agent/api/..."): resolve them against the server.
  const pageFetch = (path, options) => fetch(new URL(path, base), options);
  new Function('document', 'localStorage', 'fetch', script)(document, localStorage, pageFetch);

  const snapshot = () => ({
    title: document.title,
    elements: Object.fromEntries(Object.entries(elements).map(([id, element]) => [id, {
      text: element.textContent, hidden: element.hidden, disabled: element.disabled, value: element.value,
      placeholder: element.placeholder, className: element.className,
    }])),
    lists: Object.fromEntries(['waiting', 'active', 'ended'].map((group) => [group,
      elements['list-' + group].descendants().filter((node) => node.tagName === 'button')
        .map((button) => ({ conversationId: button.title, text: button.textContent, selected: button.className === 'selected' }))])),
  });
  let last = '';
  setInterval(() => {
    const page = snapshot();
    const text = JSON.stringify(page);
    if (text !== last) {
      last = text;
      emit({ event: 'snapshot', page });
    }
  }, 50);

  const commands = {
    set: (command) => { elements[command.id].value = command.value; elements[command.id].dispatch('change'); },
    click: (command) => elements[command.id].dispatch('click'),
    submit: (command) => elements[command.id].dispatch('submit'),
    select: (command) => {
      const buttons = ['waiting', 'active', 'ended'].flatMap((group) => elements['list-' + group].descendants());
      const button = buttons.find((node) => node.tagName === 'button' && node.title === command.conversationId);
      if (!button) throw new Error(`no handoff ${command.conversationId} in the list`);
      button.dispatch('click');
    },
    end: () => process.exit(0),
  };
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (!line.trim()) return;
    try {
      const command = JSON.parse(line);
      const handler = commands[command.cmd];
      if (!handler) throw new Error(`unknown cmd: ${command.cmd}`);
      handler(command);
    } catch (err) {
      emit({ event: 'error', message: err.message });
    }
  }).on('close', () => process.exit(0));
}

process.on('unhandledRejection', (err) => emit({ event: 'error', message: `unhandled: ${err && err.message}` }));
main().catch((err) => {
  emit({ event: 'error', message: err.message });
  process.exit(1);
});
