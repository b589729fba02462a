// The typed client of the public REST API. Every call of the console goes
// through here: paths and bodies are checked against the types generated from
// the OpenAPI document (src/api.gen.ts), so a renamed field breaks `tsc`.
import type { components, paths } from './api.gen';

export type S = components['schemas'];

/** The plural path segment of every resource kind with the usual CRUD routes. */
export type Plural =
  | 'alarm-rules' | 'api-keys' | 'buckets' | 'elastic-ips' | 'external-networks' | 'flavors'
  | 'hosts' | 'images' | 'instances' | 'load-balancers' | 'nat-gateways' | 'network-interfaces'
  | 'placement-groups' | 'projects' | 'route-tables' | 's3-keys' | 'security-groups'
  | 'snapshot-policies' | 'snapshots' | 'subnets' | 'users' | 'vips' | 'volumes' | 'vpcs';

type Json<R> = R extends { content: { 'application/json': infer T } } ? T : never;
type ItemPath<K extends Plural> = `/v1/${K}/{id}`;
type ListPath<K extends Plural> = `/v1/${K}`;

/** One object of kind K as the API returns it: `{metadata, spec, status}`. */
export type Obj<K extends Plural> = paths[ItemPath<K>] extends { get: { responses: { 200: infer R } } } ? Json<R> : never;
/** One page of a list of kind K. */
export type Page<K extends Plural> = paths[ListPath<K>] extends { get: { responses: { 200: infer R } } } ? Json<R> : never;
/** The body of `POST /v1/<kind>`. */
export type CreateBody<K extends Plural> = paths[ListPath<K>] extends { post: { requestBody: { content: { 'application/json': infer B } } } } ? B : never;
/** What `POST /v1/<kind>` answers (usually the object; keys answer the secret once). */
export type Created<K extends Plural> = paths[ListPath<K>] extends { post: { responses: { 201: infer R } } } ? Json<R> : never;
/** The body of `PUT /v1/<kind>/<id>`. */
export type UpdateBody<K extends Plural> = paths[ItemPath<K>] extends { put: { requestBody: { content: { 'application/json': infer B } } } } ? B : never;
export type Spec<K extends Plural> = Obj<K> extends { spec: infer T } ? T : never;
export type AnyObj = { metadata: S['Metadata']; spec: unknown; status?: unknown };

/** `POST /v1/sessions`, `GET /v1/session`: the session cookie's holder. */
export interface Session {
  user: string;
  username: string;
  project: string;
  project_name: string;
  role: 'admin' | 'member';
  csrf_token: string;
  expires_at: string;
}
export type Login = { username: string; password: string } | { token: string } | { login_link: string };

/** `PUT /v1/users/{id}/password`. */
export interface SetPassword {
  password: string;
  current_password?: string | null;
}

// The session routes joined the OpenAPI document after this client was written:
// while the document lacks a schema these checks pass; once it has them, the
// hand-written types above must agree with the generated ones, or tsc fails.
type Gen<N extends string> = N extends keyof S ? S[N] : never;
type Same<A, B> = [B] extends [never] ? true : [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type Fits<A, B> = [B] extends [never] ? true : [A] extends [B] ? true : false;
export const schemasAgree: [Same<Session, Gen<'SessionInfo'>>, Fits<Login, Gen<'LoginRequest'>>, Fits<SetPassword, Gen<'SetPassword'>>] = [true, true, true];

/** An error answered by the API (or the network), with the API's message. */
export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

let csrf = '';
let onUnauthorized: (() => void) | null = null;

export function setCsrf(token: string): void {
  csrf = token;
}
/** Called when a call answers 401 (the session is gone or expired). */
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

/** Reads the API's error body (`{code, message, details}`, or the same inside `error`). */
export function errorFrom(status: number, text: string): ApiError {
  try {
    const j = JSON.parse(text) as Record<string, unknown>;
    const e = (j && typeof j.error === 'object' && j.error ? j.error : j) as Record<string, unknown>;
    if (typeof e.message === 'string') {
      return new ApiError(status, String(e.code ?? 'error'), e.message, (e.details as Record<string, unknown>) ?? {});
    }
  } catch {
    /* not JSON */
  }
  return new ApiError(status, 'http_' + status, text.trim() || `HTTP ${status}`);
}

export interface RequestOptions {
  /** Don't treat a 401 as an expired session (the login calls). */
  no401?: boolean;
  signal?: AbortSignal;
  headers?: Record<string, string>;
}

/** One API call; rejects with an ApiError carrying the API's message. */
export async function call<T>(method: string, path: string, body?: unknown, opts: RequestOptions = {}): Promise<{ data: T; headers: Headers }> {
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && method !== 'HEAD' && csrf) headers['X-CSRF-Token'] = csrf;
  let resp: Response;
  try {
    resp = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      signal: opts.signal,
    });
  } catch (e) {
    if ((e as Error).name === 'AbortError') throw e;
    throw new ApiError(0, 'network', 'Cannot reach the server: ' + String((e as Error).message ?? e));
  }
  const text = await resp.text();
  if (!resp.ok) {
    const err = errorFrom(resp.status, text);
    if (resp.status === 401 && !opts.no401 && onUnauthorized) onUnauthorized();
    throw err;
  }
  const ct = resp.headers.get('Content-Type') ?? '';
  const data = (text && ct.includes('json') ? JSON.parse(text) : text) as T;
  return { data, headers: resp.headers };
}

function qs(q: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null && v !== '') p.set(k, String(v));
  const s = p.toString();
  return s ? '?' + s : '';
}
const enc = encodeURIComponent;

export const api = {
  // Sessions (cookie auth).
  login: (body: Login) => call<Session>('POST', '/v1/sessions', body, { no401: true }).then((r) => r.data),
  session: () => call<Session>('GET', '/v1/session', undefined, { no401: true }).then((r) => r.data),
  logout: () => call<unknown>('DELETE', '/v1/session', undefined, { no401: true }).then(() => undefined),

  // CRUD of every kind.
  list: <K extends Plural>(kind: K, q: { limit?: number; page_token?: string; project?: string } = {}, signal?: AbortSignal) =>
    call<Page<K>>('GET', `/v1/${kind}${qs(q)}`, undefined, { signal }).then((r) => r.data),
  get: <K extends Plural>(kind: K, id: string, signal?: AbortSignal) =>
    call<Obj<K>>('GET', `/v1/${kind}/${enc(id)}`, undefined, { signal }).then((r) => r.data),
  create: <K extends Plural>(kind: K, body: CreateBody<K>) =>
    call<Created<K>>('POST', `/v1/${kind}`, body).then((r) => r.data),
  update: <K extends Plural>(kind: K, id: string, body: UpdateBody<K>) =>
    call<Obj<K>>('PUT', `/v1/${kind}/${enc(id)}`, body).then((r) => r.data),
  remove: <K extends Plural>(kind: K, id: string, q: { force?: boolean } = {}) =>
    call<unknown>('DELETE', `/v1/${kind}/${enc(id)}${qs({ force: q.force ? 'true' : undefined })}`).then(() => undefined),

  /** Every object of a kind (following pages, at most `max`). */
  async listAll<K extends Plural>(kind: K, q: { project?: string; max?: number } = {}, signal?: AbortSignal): Promise<Obj<K>[]> {
    const out: Obj<K>[] = [];
    let token: string | undefined;
    const max = q.max ?? 10000;
    do {
      const page = (await api.list(kind, { limit: 1000, page_token: token, project: q.project }, signal)) as unknown as {
        items: Obj<K>[];
        next_page_token?: string | null;
      };
      out.push(...page.items);
      token = page.next_page_token ?? undefined;
    } while (token && out.length < max);
    return out;
  },

  /** Reads the object, changes its spec and PUTs it back at that revision (retried on a race). */
  async updateSpec<K extends Plural>(kind: K, id: string, change: (spec: Spec<K>, obj: Obj<K>) => void): Promise<Obj<K>> {
    for (let attempt = 0; ; attempt++) {
      const got = await api.get(kind, id);
      const cur = got as unknown as AnyObj;
      const spec = structuredClone(cur.spec) as Spec<K>;
      change(spec, got);
      try {
        const body = { spec, labels: cur.metadata.labels, revision: cur.metadata.revision } as unknown as UpdateBody<K>;
        return await api.update(kind, id, body);
      } catch (e) {
        if (e instanceof ApiError && e.code === 'conflict' && attempt < 3 && /changed|revision/i.test(e.message)) continue;
        throw e;
      }
    }
  },

  setPassword: (user: string, body: SetPassword) =>
    call<unknown>('PUT', `/v1/users/${enc(user)}/password`, body).then(() => undefined),
  whoami: () => call<S['WhoAmI']>('GET', '/v1/whoami').then((r) => r.data),
  usage: (q: { project?: string; from?: string } = {}) => call<S['UsageReport']>('GET', `/v1/usage${qs(q)}`).then((r) => r.data),
  events: (q: { limit?: number; kind?: string; since?: string; project?: string } = {}) =>
    call<S['AuditEventList']>('GET', `/v1/events${qs(q)}`).then((r) => r.data),
  metrics: (kind: 'instances' | 'hosts' | 'volumes' | 'load-balancers' | 'elastic-ips', id: string, q: { since?: string; series?: string } = {}, signal?: AbortSignal) =>
    call<S['MetricsAnswer']>('GET', `/v1/${kind}/${enc(id)}/metrics${qs(q)}`, undefined, { signal }).then((r) => r.data),
  /** The serial console log from `offset`; answers the text and where to continue. */
  async consoleLog(id: string, offset: number): Promise<{ text: string; next: number }> {
    const r = await call<string>('GET', `/v1/instances/${enc(id)}/console${qs({ offset })}`, undefined, { headers: { Accept: 'text/plain' } });
    const next = Number(r.headers.get('X-Console-Offset') ?? offset + r.data.length);
    return { text: typeof r.data === 'string' ? r.data : JSON.stringify(r.data), next };
  },
  consoleSocketUrl: (id: string) =>
    `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/instances/${enc(id)}/console/attach`,

  // Bucket objects (the file browser).
  objects: (bucket: string, q: { prefix?: string; delimiter?: string; page_token?: string }) =>
    call<BucketListing>('GET', `/v1/buckets/${enc(bucket)}/objects${qs(q)}`).then((r) => r.data),
  objectUrl: (bucket: string, key: string) => `/v1/buckets/${enc(bucket)}/objects/${key.split('/').map(enc).join('/')}`,
  deleteObject: (bucket: string, key: string) => call<unknown>('DELETE', api.objectUrl(bucket, key)).then(() => undefined),
};

export interface BucketObject {
  key: string;
  size: number;
  last_modified?: string;
  etag?: string;
}
export interface BucketListing {
  items: BucketObject[];
  prefixes?: string[];
  next_page_token?: string | null;
}

/** Uploads a file as the raw body of a PUT, reporting progress (0..1). */
export function upload(path: string, file: Blob, onProgress: (fraction: number, loaded: number) => void): { done: Promise<unknown>; abort: () => void } {
  const xhr = new XMLHttpRequest();
  const done = new Promise<unknown>((resolve, reject) => {
    xhr.open('PUT', path);
    xhr.withCredentials = true;
    xhr.setRequestHeader('Content-Type', 'application/octet-stream');
    if (csrf) xhr.setRequestHeader('X-CSRF-Token', csrf);
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable && e.total > 0) onProgress(e.loaded / e.total, e.loaded);
    };
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1, file.size);
        try {
          resolve(xhr.responseText ? JSON.parse(xhr.responseText) : undefined);
        } catch {
          resolve(xhr.responseText);
        }
      } else {
        const err = errorFrom(xhr.status, xhr.responseText);
        if (xhr.status === 401 && onUnauthorized) onUnauthorized();
        reject(err);
      }
    };
    xhr.onerror = () => reject(new ApiError(0, 'network', 'The upload failed: the connection was lost.'));
    xhr.onabort = () => reject(new ApiError(0, 'aborted', 'The upload was cancelled.'));
    xhr.send(file);
  });
  return { done, abort: () => xhr.abort() };
}

export function message(e: unknown): string {
  if (e instanceof ApiError) return e.message;
  if (e instanceof Error) return e.message;
  return String(e);
}
