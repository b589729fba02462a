// Small shared pieces: routing, polling, dialogs, formatting.
import type { ComponentChildren, JSX } from 'preact';
import { createContext } from 'preact';
import { useCallback, useContext, useEffect, useRef, useState } from 'preact/hooks';
import { message, type Session } from './api';

export const BASE = '/console';

// ---- routing (path-based under /console/) ----
type Listener = () => void;
const listeners = new Set<Listener>();
export function navigate(to: string, replace = false): void {
  const url = to.startsWith('/') ? to : `${BASE}/${to}`;
  if (replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  listeners.forEach((l) => l());
  if (!replace) window.scrollTo(0, 0);
}
window.addEventListener('popstate', () => listeners.forEach((l) => l()));

/** The path under /console (without it), e.g. `/vms/ins-1`; and the query. */
export function useLocation(): { path: string; query: URLSearchParams } {
  const [, force] = useState(0);
  useEffect(() => {
    const l = () => force((n) => n + 1);
    listeners.add(l);
    return () => void listeners.delete(l);
  }, []);
  let path = location.pathname;
  if (path.startsWith(BASE)) path = path.slice(BASE.length);
  if (!path.startsWith('/')) path = '/' + path;
  if (path.length > 1 && path.endsWith('/')) path = path.slice(0, -1);
  return { path, query: new URLSearchParams(location.search) };
}

export function href(p: string): string {
  return BASE + (p.startsWith('/') ? p : '/' + p);
}

export function Link(props: JSX.HTMLAttributes<HTMLAnchorElement> & { to: string }): JSX.Element {
  const { to, onClick, ...rest } = props;
  return (
    <a
      {...rest}
      href={href(to)}
      onClick={(e) => {
        if (onClick) (onClick as (e: MouseEvent) => void)(e as unknown as MouseEvent);
        if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
        e.preventDefault();
        navigate(href(to));
      }}
    />
  );
}

// ---- session context ----
export const SessionCtx = createContext<Session | null>(null);
export function useSession(): Session {
  const s = useContext(SessionCtx);
  if (!s) throw new Error('no session');
  return s;
}
export const isAdmin = (s: Session | null) => s?.role === 'admin';

// ---- data ----
export interface Loaded<T> {
  data: T | undefined;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

/** Loads with `fn`, and again every `everyMs` (while the tab is visible) and on `reload()`. */
export function usePoll<T>(fn: (signal: AbortSignal) => Promise<T>, deps: unknown[], everyMs = 0): Loaded<T> {
  const [state, setState] = useState<{ data: T | undefined; error: string | null; loading: boolean }>({
    data: undefined,
    error: null,
    loading: true,
  });
  const [tick, setTick] = useState(0);
  const fnRef = useRef(fn);
  fnRef.current = fn;
  useEffect(() => {
    setState({ data: undefined, error: null, loading: true });
  }, deps);
  useEffect(() => {
    let alive = true;
    let timer: number | undefined;
    let ctl: AbortController | null = null;
    const run = async () => {
      ctl = new AbortController();
      try {
        const data = await fnRef.current(ctl.signal);
        if (alive) setState({ data, error: null, loading: false });
      } catch (e) {
        if ((e as Error).name === 'AbortError') return;
        if (alive) setState((s) => ({ data: s.data, error: message(e), loading: false }));
      }
      if (alive && everyMs > 0) timer = window.setTimeout(loop, everyMs);
    };
    const loop = () => {
      if (document.hidden) timer = window.setTimeout(loop, everyMs);
      else void run();
    };
    void run();
    return () => {
      alive = false;
      if (timer) clearTimeout(timer);
      ctl?.abort();
    };
  }, [...deps, tick, everyMs]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** Runs an action, keeping its error and whether it is running. */
export function useAction(): {
  busy: boolean;
  error: string | null;
  run: (f: () => Promise<unknown>) => Promise<boolean>;
  clear: () => void;
} {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const run = useCallback(async (f: () => Promise<unknown>) => {
    setBusy(true);
    setError(null);
    try {
      await f();
      return true;
    } catch (e) {
      setError(message(e));
      return false;
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, run, clear: () => setError(null) };
}

// ---- UI bits ----
export function ErrorBox({ error, testid = 'error' }: { error: string | null | undefined; testid?: string }) {
  if (!error) return null;
  return (
    <div class="error" role="alert" data-testid={testid}>
      {error}
    </div>
  );
}

export function Spinner({ label = 'Loading…' }: { label?: string }) {
  return (
    <span class="spinner" role="status">
      <span class="spin" aria-hidden="true" />
      {label}
    </span>
  );
}

/** A text cell that never overflows: ellipsised, the full text as its title. */
export function Trunc({ text, class: cls }: { text: string | null | undefined; class?: string }) {
  const t = text ?? '';
  return (
    <span class={'trunc ' + (cls ?? '')} title={t}>
      {t}
    </span>
  );
}

const PHASE_CLASS: Record<string, string> = {
  Running: 'ok', Ready: 'ok', Active: 'ok', Available: 'ok', InUse: 'ok', up: 'ok', ok: 'ok',
  Stopped: 'idle', drained: 'idle', unknown: 'idle',
  Failed: 'bad', Unschedulable: 'bad', HostDown: 'bad', NotReady: 'bad', down: 'bad', firing: 'bad',
};
export function Phase({ phase }: { phase: string | null | undefined }) {
  const p = phase || '—';
  return (
    <span class={'phase ' + (PHASE_CLASS[p] ?? 'busy')} data-testid="phase">
      {p}
    </span>
  );
}

/** A modal dialog (the native <dialog>, so focus and Escape behave). */
export function Dialog(props: {
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  testid?: string;
  wide?: boolean;
}) {
  const ref = useModal();
  return (
    <dialog
      ref={ref}
      class={props.wide ? 'wide' : ''}
      data-testid={props.testid ?? 'dialog'}
      aria-label={props.title}
      onCancel={(e) => {
        e.preventDefault();
        props.onClose();
      }}
    >
      <h2>{props.title}</h2>
      {props.children}
    </dialog>
  );
}

/** Asks before a destructive action; shows its error in the dialog. */
export function Confirm(props: {
  title: string;
  body: ComponentChildren;
  confirmLabel?: string;
  danger?: boolean;
  onConfirm: () => Promise<unknown>;
  onClose: () => void;
}) {
  const act = useAction();
  return (
    <Dialog title={props.title} onClose={props.onClose} testid="confirm-dialog">
      <div class="dialog-body">{props.body}</div>
      <ErrorBox error={act.error} />
      <div class="buttons">
        <button type="button" onClick={props.onClose} data-testid="confirm-cancel">
          Cancel
        </button>
        <button
          type="button"
          class={props.danger === false ? 'primary' : 'danger'}
          disabled={act.busy}
          data-testid="confirm-ok"
          onClick={async () => {
            if (await act.run(props.onConfirm)) props.onClose();
          }}
        >
          {act.busy ? 'Working…' : (props.confirmLabel ?? 'Delete')}
        </button>
      </div>
    </Dialog>
  );
}

// ---- formatting ----
export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < u.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(v < 10 ? 1 : 0)} ${u[i]}`;
}
export function mib(n: number | null | undefined): string {
  return n === null || n === undefined ? '—' : bytes(n * 1024 * 1024);
}
export function ago(iso: string | null | undefined): string {
  if (!iso) return '—';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.round((Date.now() - t) / 1000);
  if (s < 60) return `${Math.max(s, 0)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}
export function when(iso: string | null | undefined): string {
  if (!iso) return '—';
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}

export function useTitle(t: string) {
  useEffect(() => {
    document.title = `${t} · Yunhan`;
  }, [t]);
}

/** Parses `k=v` lines (labels, selectors). */
export function parseLabels(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const l = line.trim();
    if (!l) continue;
    const i = l.indexOf('=');
    if (i <= 0) throw new Error(`"${l}" is not a label: write key=value`);
    out[l.slice(0, i).trim()] = l.slice(i + 1).trim();
  }
  return out;
}

/** A `<dialog>` ref shown modal while the component is mounted. */
export function useModal() {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (d && !d.open) d.showModal();
    return () => d?.open && d.close();
  }, []);
  return ref;
}
