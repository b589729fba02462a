// The serial console in the browser: xterm.js over the API's WebSocket.
// Loaded on demand (a chunk of its own) by the VM console page.
//
// xterm's DOM renderer writes its computed CSS into <style> elements, which a
// strict Content-Security-Policy (style-src 'self') refuses. So while xterm
// creates its elements, `document.createElement('style')` gives an inert
// element instead, whose text is mirrored into a constructed stylesheet
// (CSSOM, which the CSP allows) adopted by the document while it is connected.
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';
import { api } from './api';

class ShimStyle extends HTMLElement {
  sheet = new CSSStyleSheet();
  private observer = new MutationObserver(() => this.sync());
  connectedCallback() {
    this.observer.observe(this, { childList: true, characterData: true, subtree: true });
    this.sync();
    if (!document.adoptedStyleSheets.includes(this.sheet)) document.adoptedStyleSheets = [...document.adoptedStyleSheets, this.sheet];
  }
  disconnectedCallback() {
    this.observer.disconnect();
    document.adoptedStyleSheets = document.adoptedStyleSheets.filter((s) => s !== this.sheet);
  }
  sync() {
    this.sheet.replaceSync(this.textContent ?? '');
  }
}
if (!customElements.get('yh-xterm-style')) customElements.define('yh-xterm-style', ShimStyle);

function withStyleShim<T>(f: () => T): T {
  const orig = Document.prototype.createElement;
  Document.prototype.createElement = function (this: Document, tag: string, opts?: ElementCreationOptions) {
    if (String(tag).toLowerCase() === 'style') return orig.call(this, 'yh-xterm-style', opts);
    return orig.call(this, tag, opts);
  } as typeof orig;
  try {
    return f();
  } finally {
    Document.prototype.createElement = orig;
  }
}

export interface ConsoleHandle {
  dispose(): void;
  focus(): void;
}

/** Opens the terminal in `el`, shows the recent log, then attaches to the live console. */
export function openConsole(el: HTMLElement, vmId: string, onState: (s: string) => void): ConsoleHandle {
  const term = withStyleShim(() => {
    const t = new Terminal({
      convertEol: false,
      cursorBlink: true,
      fontFamily: 'ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace',
      fontSize: 14,
      scrollback: 5000,
      theme: { background: '#0b1020', foreground: '#e2e8f0' },
    });
    t.open(el);
    return t;
  });
  // Later style elements (resize, theme) come through the same path.
  const fitter = new FitAddon();
  term.loadAddon(fitter);
  const fit = () => {
    try {
      withStyleShim(() => fitter.fit());
    } catch {
      /* not laid out yet */
    }
  };
  const ro = new ResizeObserver(() => fit());
  ro.observe(el);

  let ws: WebSocket | null = null;
  let closed = false;
  const enc = new TextEncoder();
  term.onData((d) => {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(enc.encode(d));
  });

  const connect = () => {
    onState('connecting');
    ws = new WebSocket(api.consoleSocketUrl(vmId));
    ws.binaryType = 'arraybuffer';
    ws.onopen = () => onState('connected');
    ws.onmessage = (e) => {
      if (typeof e.data === 'string') term.write(e.data);
      else term.write(new Uint8Array(e.data as ArrayBuffer));
    };
    ws.onclose = (e) => {
      if (closed) return;
      onState(`disconnected${e.reason ? ': ' + e.reason : ''}`);
    };
    ws.onerror = () => onState('error: the console connection failed');
  };

  (async () => {
    try {
      // The history first, so what the guest printed before we came is there.
      const { text } = await api.consoleLog(vmId, 0);
      const tail = text.length > 65536 ? text.slice(-65536) : text;
      if (tail) term.write(tail.replace(/\r?\n/g, '\r\n'));
    } catch {
      /* no log yet */
    }
    if (!closed) connect();
  })();

  return {
    dispose() {
      closed = true;
      ro.disconnect();
      ws?.close();
      term.dispose();
    },
    focus() {
      term.focus();
    },
  };
}

/** Reconnects a closed console. */
export type OpenConsole = typeof openConsole;
