// A data-driven page for the many simple kinds: a list (filter, paging, live
// refresh), a create form, a detail page with actions, and deletion.
import type { ComponentChildren, JSX } from 'preact';
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, type AnyObj, type CreateBody, type Created, type Obj, type Plural } from './api';
import {
  Confirm, Dialog, ErrorBox, Link, Phase, Spinner, Trunc, ago, isAdmin, navigate, parseLabels, useAction, usePoll,
  useSession, useTitle, when, SessionCtx,
} from './lib';
import { useContext } from 'preact/hooks';

export type Values = Record<string, string | boolean | string[]>;

export interface Field {
  name: string;
  label: string;
  type?: 'text' | 'number' | 'textarea' | 'checkbox' | 'select' | 'multi' | 'password' | 'file';
  required?: boolean;
  placeholder?: string;
  help?: string;
  /** Choices for select/multi: fixed, or the names of another kind's objects. */
  options?: { value: string; label: string }[];
  ref?: Plural;
  /** Only objects of `ref` passing this filter (given the form's values). */
  refFilter?: (o: AnyObj, v: Values) => boolean;
  /** With `ref`: the choices' values are the objects' ids (default: their names). */
  byId?: boolean;
  /** With `ref`: a choice's text (default: the object's name). */
  refLabel?: (o: AnyObj) => string;
  initial?: string | boolean | string[];
  /** Shown only when this returns true. */
  when?: (v: Values) => boolean;
  adminOnly?: boolean;
}

export interface Column<T> {
  label: string;
  get: (o: T) => ComponentChildren;
  /** The text the filter box matches (default: none). */
  text?: (o: T) => string;
  cls?: string;
}

export interface Action<T> {
  label: string;
  testid?: string;
  /** A confirmation question; absent: runs at once. */
  confirm?: (o: T) => string;
  danger?: boolean;
  show?: (o: T, admin: boolean) => boolean;
  run?: (o: T) => Promise<unknown>;
  /** A dialog of its own instead of `run`. */
  dialog?: (o: T, close: () => void, done: () => void) => JSX.Element;
}

export interface KindDef<K extends Plural> {
  kind: K;
  title: string;
  singular: string;
  /** Route of the list under /console, e.g. `/vpcs`. */
  route: string;
  adminOnly?: boolean;
  columns: Column<Obj<K>>[];
  fields?: Field[];
  toBody?: (v: Values, admin: boolean) => CreateBody<K>;
  /** After create: e.g. show a secret once. Return content to show, or null to go on. */
  created?: (c: Created<K>) => ComponentChildren | null;
  actions?: Action<Obj<K>>[];
  /** Extra sections of the detail page. */
  detail?: (o: Obj<K>, reload: () => void) => ComponentChildren;
  noDelete?: boolean;
  noEdit?: boolean;
  /** Refresh interval of the list, ms. */
  poll?: number;
  intro?: ComponentChildren;
  /** Where a row links to (default `${route}/${id}`). */
  link?: (o: Obj<K>) => string;
  deleteQuery?: { force?: boolean };
}

const PAGE = 50;

export function phaseOf(o: AnyObj): string {
  const st = o.status as { phase?: string } | undefined;
  return st?.phase ?? '';
}
export const nameCol = <T extends AnyObj>(): Column<T> => ({
  label: 'Name',
  get: (o) => <Trunc text={o.metadata.name} />,
  text: (o) => `${o.metadata.name} ${o.metadata.id}`,
  cls: 'name',
});
export const phaseCol = <T extends AnyObj>(): Column<T> => ({
  label: 'State',
  get: (o) => <Phase phase={phaseOf(o) || 'Ready'} />,
  text: (o) => phaseOf(o),
});
export const ageCol = <T extends AnyObj>(): Column<T> => ({
  label: 'Created',
  get: (o) => <span title={when(o.metadata.created)}>{ago(o.metadata.created)}</span>,
});
export const textCol = <T extends AnyObj>(label: string, f: (o: T) => string | number | null | undefined): Column<T> => ({
  label,
  get: (o) => <Trunc text={String(f(o) ?? '—')} />,
  text: (o) => String(f(o) ?? ''),
});

/** The list page of a kind. */
export function ResourceList<K extends Plural>({ def }: { def: KindDef<K> }) {
  useTitle(def.title);
  const s = useSession();
  const admin = isAdmin(s);
  const list = usePoll((sig) => api.listAll(def.kind, {}, sig), [def.kind], def.poll ?? 4000);
  const [creating, setCreating] = useState(false);
  const items = (list.data ?? []) as unknown as AnyObj[];
  return (
    <section data-testid={`page-${def.kind}`}>
      <header class="page-head">
        <h1>{def.title}</h1>
        {def.fields && (
          <button type="button" class="primary" data-testid={`create-${def.kind}`} onClick={() => setCreating(true)}>
            Create {def.singular}
          </button>
        )}
      </header>
      {def.intro && <p class="intro">{def.intro}</p>}
      <ErrorBox error={list.error} />
      <Table<AnyObj>
        items={items}
        loading={list.loading}
        columns={[...(def.columns as unknown as Column<AnyObj>[]), ...(admin && !def.adminOnly ? [projectCol()] : [])]}
        link={(o) => (def.link ? def.link(o as unknown as Obj<K>) : `${def.route}/${o.metadata.id}`)}
        testid={`list-${def.kind}`}
        empty={`No ${def.title.toLowerCase()} yet.`}
      />
      {creating && def.fields && (
        <CreateDialog
          def={def}
          onClose={() => setCreating(false)}
          onDone={() => {
            list.reload();
          }}
        />
      )}
    </section>
  );
}

function projectCol(): Column<AnyObj> {
  return { label: 'Project', get: (o) => <ProjectName id={o.metadata.project} />, text: (o) => o.metadata.project ?? '' };
}

const names = new Map<Plural, { at: number; p: Promise<Map<string, string>> }>();
/** id → name of every object of a kind (cached for 15 s). */
function namesOf(kind: Plural): Promise<Map<string, string>> {
  const c = names.get(kind);
  if (c && Date.now() - c.at < 15000) return c.p;
  const p = api.listAll(kind).then(
    (os) => new Map((os as unknown as AnyObj[]).map((o) => [o.metadata.id, o.metadata.name])),
    () => new Map<string, string>(),
  );
  names.set(kind, { at: Date.now(), p });
  return p;
}
/** Another object, by its name (ids are what the API stores), linked when `route` is given. */
export function RefName({ kind, id, route }: { kind: Plural; id: string | null | undefined; route?: string }) {
  const [map, setMap] = useState<Map<string, string> | null>(null);
  useEffect(() => {
    if (id) void namesOf(kind).then(setMap);
  }, [kind, id]);
  if (!id) return <span class="muted">—</span>;
  const text = <Trunc text={map?.get(id) ?? id} />;
  return route && map?.has(id) ? <Link to={`${route}/${id}`}>{text}</Link> : text;
}
export function ProjectName({ id }: { id: string | null | undefined }) {
  return <RefName kind="projects" id={id} />;
}
export const refCol = <T extends AnyObj>(label: string, kind: Plural, f: (o: T) => string | null | undefined, route?: string): Column<T> => ({
  label,
  get: (o) => <RefName kind={kind} id={f(o)} route={route} />,
  text: (o) => f(o) ?? '',
});

/** A light table with a filter box and client-side paging. */
export function Table<T extends AnyObj>(props: {
  items: T[];
  loading?: boolean;
  columns: Column<T>[];
  link?: (o: T) => string;
  testid: string;
  empty: string;
  pageSize?: number;
}) {
  const [filter, setFilter] = useState('');
  const [page, setPage] = useState(0);
  const size = props.pageSize ?? PAGE;
  const filtered = useMemo(() => {
    const f = filter.trim().toLowerCase();
    if (!f) return props.items;
    return props.items.filter((o) =>
      props.columns.some((c) => c.text && c.text(o).toLowerCase().includes(f)) || o.metadata.id.includes(f),
    );
  }, [props.items, filter, props.columns]);
  const pages = Math.max(1, Math.ceil(filtered.length / size));
  const p = Math.min(page, pages - 1);
  const rows = filtered.slice(p * size, p * size + size);
  return (
    <div class="table-wrap">
      <div class="table-tools">
        <label class="filter">
          <span class="sr-only">Filter</span>
          <input
            type="search"
            placeholder="Filter by name, id, state…"
            value={filter}
            data-testid="filter"
            onInput={(e) => {
              setFilter((e.target as HTMLInputElement).value);
              setPage(0);
            }}
          />
        </label>
        <span class="count" data-testid="count">
          {filtered.length === props.items.length ? `${props.items.length}` : `${filtered.length} of ${props.items.length}`}
        </span>
      </div>
      <div class="scroll-x">
        <table data-testid={props.testid}>
          <thead>
            <tr>
              {props.columns.map((c) => (
                <th class={c.cls}>{c.label}</th>
              ))}
            </tr>
          </thead>
          <tbody>
            {rows.map((o) => (
              <tr key={o.metadata.id} data-testid="row" data-id={o.metadata.id} data-name={o.metadata.name}>
                {props.columns.map((c, i) => (
                  <td class={c.cls}>{i === 0 && props.link ? <Link to={props.link(o)}>{c.get(o)}</Link> : c.get(o)}</td>
                ))}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {props.loading && !props.items.length && <Spinner />}
      {!props.loading && !filtered.length && <p class="empty">{filter ? 'Nothing matches the filter.' : props.empty}</p>}
      {pages > 1 && (
        <nav class="pager" aria-label="Pages">
          <button type="button" disabled={p === 0} onClick={() => setPage(p - 1)} data-testid="prev-page">
            ‹ Previous
          </button>
          <span>
            Page {p + 1} of {pages}
          </span>
          <button type="button" disabled={p >= pages - 1} onClick={() => setPage(p + 1)} data-testid="next-page">
            Next ›
          </button>
        </nav>
      )}
    </div>
  );
}

/** The options of a select bound to another kind (its objects' names). */
function useRefOptions(fields: Field[]) {
  const kinds = [...new Set(fields.filter((f) => f.ref).map((f) => f.ref!))];
  return usePoll(
    async (sig) => {
      const out: Record<string, AnyObj[]> = {};
      await Promise.all(
        kinds.map(async (k) => {
          out[k] = (await api.listAll(k, {}, sig).catch(() => [])) as unknown as AnyObj[];
        }),
      );
      return out;
    },
    [kinds.join(',')],
  );
}

export function initialValues(fields: Field[]): Values {
  const v: Values = {};
  for (const f of fields) v[f.name] = f.initial ?? (f.type === 'checkbox' ? false : f.type === 'multi' ? [] : '');
  return v;
}

/** The inputs of a form; every one has a label. */
export function FormFields(props: { fields: Field[]; values: Values; set: (v: Values) => void; idPrefix: string }) {
  const admin = isAdmin(useContext(SessionCtx));
  const refs = useRefOptions(props.fields);
  const v = props.values;
  return (
    <>
      {props.fields
        .filter((f) => (!f.when || f.when(v)) && (!f.adminOnly || admin))
        .map((f) => {
          const id = `${props.idPrefix}-${f.name}`;
          const set = (x: string | boolean | string[]) => props.set({ ...v, [f.name]: x });
          let options = f.options;
          if (f.ref) {
            const objs = (refs.data?.[f.ref] ?? []).filter((o) => !f.refFilter || f.refFilter(o, v));
            options = objs.map((o) => ({ value: f.byId ? o.metadata.id : o.metadata.name, label: f.refLabel ? f.refLabel(o) : o.metadata.name }));
          }
          const common = { id, name: f.name, 'data-testid': `field-${f.name}`, required: f.required };
          let input: JSX.Element;
          switch (f.type) {
            case 'textarea':
              input = (
                <textarea {...common} rows={4} placeholder={f.placeholder} value={String(v[f.name] ?? '')}
                  onInput={(e) => set((e.target as HTMLTextAreaElement).value)} />
              );
              break;
            case 'checkbox':
              return (
                <div class="field check" key={f.name}>
                  <input {...common} type="checkbox" checked={Boolean(v[f.name])} onChange={(e) => set((e.target as HTMLInputElement).checked)} />
                  <label for={id}>{f.label}</label>
                  {f.help && <small>{f.help}</small>}
                </div>
              );
            case 'select':
              input = (
                <select {...common} value={String(v[f.name] ?? '')} onChange={(e) => set((e.target as HTMLSelectElement).value)}>
                  <option value="">{f.required ? `Choose…` : '(none)'}</option>
                  {(options ?? []).map((o) => (
                    <option value={o.value}>{o.label}</option>
                  ))}
                </select>
              );
              break;
            case 'multi': {
              const cur = (v[f.name] as string[]) ?? [];
              return (
                <fieldset class="field multi" key={f.name} data-testid={`field-${f.name}`}>
                  <legend>{f.label}</legend>
                  {!(options ?? []).length && <small class="muted">None to choose from.</small>}
                  {(options ?? []).map((o) => {
                    const oid = `${id}-${o.value}`;
                    return (
                      <span class="check">
                        <input type="checkbox" id={oid} checked={cur.includes(o.value)}
                          onChange={(e) => set((e.target as HTMLInputElement).checked ? [...cur, o.value] : cur.filter((x) => x !== o.value))} />
                        <label for={oid}>{o.label}</label>
                      </span>
                    );
                  })}
                  {f.help && <small>{f.help}</small>}
                </fieldset>
              );
            }
            default:
              input = (
                <input {...common} type={f.type ?? 'text'} placeholder={f.placeholder} value={String(v[f.name] ?? '')}
                  onInput={(e) => set((e.target as HTMLInputElement).value)} />
              );
          }
          return (
            <div class="field" key={f.name}>
              <label for={id}>
                {f.label}
                {f.required && <span class="req" aria-hidden="true"> *</span>}
              </label>
              {input}
              {f.help && <small>{f.help}</small>}
            </div>
          );
        })}
    </>
  );
}

/** Helpers to turn form values into request bodies. */
export const str = (v: Values, k: string): string => String(v[k] ?? '').trim();
export const opt = (v: Values, k: string): string | undefined => str(v, k) || undefined;
export const num = (v: Values, k: string): number | undefined => {
  const s = str(v, k);
  if (!s) return undefined;
  const n = Number(s);
  if (!Number.isFinite(n)) throw new Error(`${k}: "${s}" is not a number`);
  return n;
};
export const list = (v: Values, k: string): string[] => {
  const x = v[k];
  if (Array.isArray(x)) return x;
  return String(x ?? '').split(/[\s,]+/).filter(Boolean);
};
export const meta = (v: Values) => {
  const labels = str(v, 'labels') ? parseLabels(str(v, 'labels')) : undefined;
  return { name: str(v, 'name'), ...(labels ? { labels } : {}) };
};

export function CreateDialog<K extends Plural>(props: { def: KindDef<K>; onClose: () => void; onDone: () => void }) {
  const { def } = props;
  const s = useSession();
  const [values, setValues] = useState<Values>(() => initialValues(def.fields ?? []));
  const act = useAction();
  const [shown, setShown] = useState<ComponentChildren | null>(null);
  if (shown)
    return (
      <Dialog title={`${def.singular} created`} onClose={props.onClose} testid="created-dialog">
        {shown}
        <div class="buttons">
          <button type="button" class="primary" onClick={props.onClose} data-testid="created-close">
            Done
          </button>
        </div>
      </Dialog>
    );
  return (
    <Dialog title={`Create ${def.singular}`} onClose={props.onClose} testid="create-dialog">
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          let created: Created<K> | undefined;
          const ok = await act.run(async () => {
            const body = def.toBody!(values, isAdmin(s));
            created = await api.create(def.kind, body);
          });
          if (!ok) return;
          props.onDone();
          const extra = created !== undefined && def.created ? def.created(created) : null;
          if (extra) setShown(extra);
          else props.onClose();
        }}
      >
        <FormFields fields={def.fields ?? []} values={values} set={setValues} idPrefix={`create-${def.kind}`} />
        <ErrorBox error={act.error} testid="form-error" />
        <div class="buttons">
          <button type="button" onClick={props.onClose}>
            Cancel
          </button>
          <button type="submit" class="primary" disabled={act.busy} data-testid="submit">
            {act.busy ? 'Creating…' : 'Create'}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/** Key/value rows of a spec or status (nested objects flattened to a.b). */
export function KV({ value, testid }: { value: unknown; testid?: string }) {
  const rows: [string, string][] = [];
  const walk = (prefix: string, x: unknown) => {
    if (x === null || x === undefined) return;
    if (Array.isArray(x)) {
      if (!x.length) return;
      if (x.every((e) => typeof e !== 'object' || e === null)) rows.push([prefix, x.join(', ')]);
      else x.forEach((e, i) => walk(`${prefix}[${i}]`, e));
    } else if (typeof x === 'object') {
      const entries = Object.entries(x as Record<string, unknown>);
      if (!entries.length && prefix) return;
      for (const [k, v] of entries) walk(prefix ? `${prefix}.${k}` : k, v);
    } else rows.push([prefix, String(x)]);
  };
  walk('', value);
  if (!rows.length) return <p class="muted">—</p>;
  return (
    <dl class="kv" data-testid={testid}>
      {rows.map(([k, v]) => (
        <div>
          <dt>{k}</dt>
          <dd>
            <Trunc text={v} />
          </dd>
        </div>
      ))}
    </dl>
  );
}

/** The detail page of one object of a kind. */
export function ResourceDetail<K extends Plural>({ def, id }: { def: KindDef<K>; id: string }) {
  const s = useSession();
  const admin = isAdmin(s);
  const obj = usePoll((sig) => api.get(def.kind, id, sig), [def.kind, id], def.poll ?? 4000);
  const [dialog, setDialog] = useState<JSX.Element | null>(null);
  const act = useAction();
  const o = obj.data as unknown as AnyObj | undefined;
  const typed = obj.data as Obj<K>;
  useTitle(o ? `${def.singular} ${o.metadata.name}` : def.singular);
  if (!o) {
    return (
      <section>
        <p class="crumbs"><Link to={def.route}>{def.title}</Link></p>
        {obj.error ? <NotFound message={obj.error} /> : <Spinner />}
      </section>
    );
  }
  const close = () => setDialog(null);
  const done = () => {
    setDialog(null);
    obj.reload();
  };
  return (
    <section data-testid={`detail-${def.kind}`}>
      <p class="crumbs"><Link to={def.route}>{def.title}</Link> /</p>
      <header class="page-head">
        <h1 class="trunc" title={o.metadata.name} data-testid="detail-name">{o.metadata.name}</h1>
        {phaseOf(o) && <Phase phase={phaseOf(o)} />}
        <div class="actions">
          {(def.actions ?? [])
            .filter((a) => !a.show || a.show(typed, admin))
            .map((a) => (
              <button
                type="button"
                class={a.danger ? 'danger' : ''}
                data-testid={a.testid ?? `action-${a.label.toLowerCase().replace(/\W+/g, '-')}`}
                disabled={act.busy}
                onClick={() => {
                  if (a.dialog) setDialog(a.dialog(typed, close, done));
                  else if (a.confirm)
                    setDialog(
                      <Confirm title={a.label} body={a.confirm(typed)} confirmLabel={a.label} danger={a.danger} onClose={close}
                        onConfirm={async () => { await a.run!(typed); obj.reload(); }} />,
                    );
                  else void act.run(async () => { await a.run!(typed); obj.reload(); });
                }}
              >
                {a.label}
              </button>
            ))}
          {!def.noEdit && (
            <button type="button" data-testid="action-edit" onClick={() => setDialog(<EditSpec kind={def.kind} obj={o} onClose={close} onDone={done} />)}>
              Edit
            </button>
          )}
          {!def.noDelete && (
            <button type="button" class="danger" data-testid="action-delete"
              onClick={() => setDialog(
                <Confirm title={`Delete ${def.singular.toLowerCase()}`} body={<>Delete {def.singular.toLowerCase()} <b>{o.metadata.name}</b>? This cannot be undone.</>}
                  onClose={close}
                  onConfirm={async () => { await api.remove(def.kind, o.metadata.id, def.deleteQuery); navigate(def.route); }} />,
              )}>
              Delete
            </button>
          )}
        </div>
      </header>
      <ErrorBox error={act.error} />
      <ErrorBox error={obj.error} testid="refresh-error" />
      {o.metadata.deleting && <p class="note">Being deleted since {when(o.metadata.deleting)}…</p>}
      <div class="cards">
        <div class="card">
          <h2>Details</h2>
          <KV value={{ id: o.metadata.id, project: o.metadata.project, created: when(o.metadata.created), labels: o.metadata.labels }} testid="metadata" />
        </div>
        <div class="card">
          <h2>Specification</h2>
          <KV value={o.spec} testid="spec" />
        </div>
        <div class="card">
          <h2>Status</h2>
          <KV value={o.status} testid="status" />
        </div>
      </div>
      {def.detail?.(typed, obj.reload)}
      {dialog}
    </section>
  );
}

export function NotFound({ message }: { message: string }) {
  return (
    <div class="notfound" data-testid="not-found" role="alert">
      <h1>Not found</h1>
      <p>{message}</p>
    </div>
  );
}

/** Edit any object's spec and labels as JSON (what the API's PUT takes). */
export function EditSpec<K extends Plural>(props: { kind: K; obj: AnyObj; onClose: () => void; onDone: () => void }) {
  const [text, setText] = useState(() => JSON.stringify(props.obj.spec, null, 2));
  const [labels, setLabels] = useState(() =>
    Object.entries(props.obj.metadata.labels ?? {}).map(([k, v]) => `${k}=${v}`).join('\n'),
  );
  const act = useAction();
  return (
    <Dialog title={`Edit ${props.obj.metadata.name}`} onClose={props.onClose} testid="edit-dialog" wide>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          const ok = await act.run(async () => {
            let spec: unknown;
            try {
              spec = JSON.parse(text);
            } catch (err) {
              throw new Error('The specification is not valid JSON: ' + (err as Error).message);
            }
            await api.update(props.kind, props.obj.metadata.id, {
              spec,
              labels: parseLabels(labels),
              revision: props.obj.metadata.revision,
            } as never);
          });
          if (ok) props.onDone();
        }}
      >
        <div class="field">
          <label for="edit-spec">Specification (JSON)</label>
          <textarea id="edit-spec" class="code" rows={14} value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} data-testid="field-spec" />
        </div>
        <div class="field">
          <label for="edit-labels">Labels (key=value, one a line)</label>
          <textarea id="edit-labels" rows={3} value={labels} onInput={(e) => setLabels((e.target as HTMLTextAreaElement).value)} data-testid="field-labels" />
        </div>
        <ErrorBox error={act.error} testid="form-error" />
        <div class="buttons">
          <button type="button" onClick={props.onClose}>Cancel</button>
          <button type="submit" class="primary" disabled={act.busy} data-testid="submit">{act.busy ? 'Saving…' : 'Save'}</button>
        </div>
      </form>
    </Dialog>
  );
}
