// Forms for what lives inside a networking object's specification: a route table's
// routes and subnets, a NAT gateway's port forwards, a load balancer's listeners with
// their members and health checks. Each change is what the CLI does: read the object,
// change its spec, PUT it back at that revision (api.updateSpec). Loaded on demand (a
// chunk of its own) by the detail pages in kinds.tsx; anything else in these specs is
// still edited as JSON with "Edit".
import type { ComponentChildren, JSX } from 'preact';
import { useState } from 'preact/hooks';
import { api, type AnyObj, type Obj, type S } from '../api';
import { Confirm, Phase, Trunc } from '../lib';
import { FormDialog } from '../kinds';
import { RefName, list, num, str, type Field, type Values } from '../resource';

type Route = S['Route'];
type Dnat = S['DnatRule'];
type Listener = S['Listener'];
type Member = S['LbMember'];
type Health = S['HealthMonitor'];

/** A dialog slot: what is open, and how to close it (after a change: and reload). */
function useDialog(reload: () => void) {
  const [dialog, setDialog] = useState<JSX.Element | null>(null);
  const close = () => setDialog(null);
  const done = () => {
    setDialog(null);
    reload();
  };
  return { dialog, open: setDialog, close, done };
}

/** A whole number in [lo, hi], or the form's error naming the field. */
function int(v: Values, k: string, label: string, lo: number, hi: number, dflt?: number): number {
  const n = num(v, k) ?? dflt;
  if (n === undefined || !Number.isInteger(n) || n < lo || n > hi) throw new Error(`${label}: a whole number from ${lo} to ${hi}`);
  return n;
}
const port = (v: Values, k: string, label = 'Port') => int(v, k, label, 1, 65535);

const nicOf = (o: AnyObj) => o.status as S['NetworkInterfaceStatus'];
const nicLabel = (o: AnyObj) => `${o.metadata.name}${nicOf(o).ip ? ` (${nicOf(o).ip})` : ''}`;
const sameProject = (a: AnyObj, b: AnyObj) => (a.metadata.project ?? '') === (b.metadata.project ?? '');

function Buttons({ children }: { children: ComponentChildren }) {
  return <span class="row-actions">{children}</span>;
}

// ---------------------------------------------------------------- route tables

const TARGETS: { value: S['RouteTargetKind']; label: string }[] = [
  { value: 'nic', label: 'a network interface (next hop)' },
  { value: 'local', label: 'local: the VPC’s own routing' },
  { value: 'nat_gateway', label: 'the VPC’s NAT gateway' },
  { value: 'external', label: 'external: out through the sender’s elastic IP' },
];
const targetText = (t: S['RouteTargetKind']) => (t === 'nat_gateway' ? 'NAT gateway' : t === 'nic' ? 'network interface' : t);

export function RouteTableRoutes({ table, reload }: { table: Obj<'route-tables'>; reload: () => void }) {
  const d = useDialog(reload);
  const id = table.metadata.id;
  const routes = table.spec.routes ?? [];
  const inVpc = (o: AnyObj) => nicOf(o).vpc === table.spec.vpc && sameProject(o, table as unknown as AnyObj);
  const fields: Field[] = [
    { name: 'destination', label: 'Destination (IPv4 CIDR; 0.0.0.0/0: everything)', required: true, placeholder: '10.20.0.0/16' },
    { name: 'target', label: 'Send to', type: 'select', required: true, options: TARGETS, initial: 'nic' },
    { name: 'nic', label: 'Next hop: a network interface of the VPC', type: 'select', ref: 'network-interfaces', byId: true, refLabel: nicLabel, refFilter: inVpc, required: true, when: (v) => v.target === 'nic' },
    { name: 'priority', label: 'Priority (between routes to one destination, the lowest wins)', type: 'number', initial: '100' },
  ];
  const add = (v: Values) => {
    const target = str(v, 'target') as S['RouteTargetKind'];
    const route: Route = { destination: str(v, 'destination'), target, priority: int(v, 'priority', 'Priority', 0, 4294967295, 100) };
    if (target === 'nic') {
      if (!str(v, 'nic')) throw new Error('Choose the network interface the route goes to.');
      route.nic = str(v, 'nic');
    }
    return api.updateSpec('route-tables', id, (s) => {
      s.routes = [...(s.routes ?? []), route];
    });
  };
  const remove = (r: Route) =>
    api.updateSpec('route-tables', id, (s) => {
      const key = (x: Route) => `${x.destination} ${x.priority ?? 100}`;
      const left = (s.routes ?? []).filter((x) => key(x) !== key(r));
      if (left.length === (s.routes ?? []).length) throw new Error(`The route to ${r.destination} is no longer in the table.`);
      s.routes = left;
    });
  return (
    <>
      <section class="card" data-testid="route-table-routes">
        <header class="card-head">
          <h2>Routes</h2>
          <button type="button" data-testid="route-add"
            onClick={() => d.open(<FormDialog title={`Add a route to ${table.metadata.name}`} submit="Add route" fields={fields} apply={add} onClose={d.close} onDone={d.done} />)}>
            Add route
          </button>
        </header>
        <p class="muted small">Traffic of the table’s subnets that leaves the subnet follows the longest matching destination, then the lowest priority.</p>
        {routes.length ? (
          <div class="scroll-x">
            <table class="small" data-testid="routes">
              <thead><tr><th>Destination</th><th>Send to</th><th>Next hop</th><th>Priority</th><th><span class="sr-only">Actions</span></th></tr></thead>
              <tbody>
                {routes.map((r) => (
                  <tr data-testid="route" data-destination={r.destination}>
                    <td>{r.destination}</td>
                    <td>{targetText(r.target)}</td>
                    <td>{r.nic ? <RefName kind="network-interfaces" id={r.nic} route="/nics" /> : '—'}</td>
                    <td>{r.priority ?? 100}</td>
                    <td>
                      <Buttons>
                        <button type="button" class="link danger" data-testid="route-remove"
                          onClick={() => d.open(
                            <Confirm title="Remove route" confirmLabel="Remove" onClose={d.close}
                              body={<>Remove the route to <b>{r.destination}</b> ({targetText(r.target)}, priority {r.priority ?? 100}) from <b>{table.metadata.name}</b>?</>}
                              onConfirm={async () => { await remove(r); reload(); }} />,
                          )}>
                          Remove
                        </button>
                      </Buttons>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        ) : (
          <p class="muted" data-testid="routes-empty">No routes: the subnets’ traffic takes the VPC’s own way.</p>
        )}
      </section>
      <section class="card" data-testid="route-table-subnets">
        <header class="card-head">
          <h2>Subnets</h2>
          <button type="button" data-testid="route-table-subnets-edit"
            onClick={() => d.open(
              <FormDialog title={`Subnets of ${table.metadata.name}`} submit="Save" onClose={d.close} onDone={d.done}
                fields={[{ name: 'subnets', label: 'Subnets whose traffic follows the table (a subnet is in at most one table)', type: 'multi', ref: 'subnets', byId: true, initial: table.spec.subnets ?? [], refFilter: (o) => (o.spec as S['SubnetSpec']).vpc === table.spec.vpc && sameProject(o, table as unknown as AnyObj) }]}
                apply={(v) => api.updateSpec('route-tables', id, (s) => { s.subnets = list(v, 'subnets'); })} />,
            )}>
            Choose subnets
          </button>
        </header>
        {(table.spec.subnets ?? []).length ? (
          <ul class="plain">{(table.spec.subnets ?? []).map((sn) => <li><RefName kind="subnets" id={sn} route="/subnets" /></li>)}</ul>
        ) : (
          <p class="muted">None: the table routes nothing yet.</p>
        )}
      </section>
      {d.dialog}
    </>
  );
}

// ---------------------------------------------------------------- NAT gateways

export function NatForwards({ gw, reload }: { gw: Obj<'nat-gateways'>; reload: () => void }) {
  const d = useDialog(reload);
  const id = gw.metadata.id;
  const rules = gw.spec.dnat ?? [];
  const fields: Field[] = [
    { name: 'protocol', label: 'Protocol', type: 'select', required: true, options: [{ value: 'tcp', label: 'TCP' }, { value: 'udp', label: 'UDP' }], initial: 'tcp' },
    { name: 'port', label: 'Port on the elastic IP', type: 'number', required: true, placeholder: '8080' },
    { name: 'to_ip', label: 'To the address (in the VPC)', required: true, placeholder: '10.10.1.5' },
    { name: 'to_port', label: 'Its port', type: 'number', required: true, placeholder: '80' },
  ];
  const add = (v: Values) => {
    const rule: Dnat = { protocol: str(v, 'protocol') as S['DnatProtocol'], port: port(v, 'port', 'Port on the elastic IP'), to_ip: str(v, 'to_ip'), to_port: port(v, 'to_port', 'Its port') };
    return api.updateSpec('nat-gateways', id, (s) => {
      s.dnat = [...(s.dnat ?? []), rule];
    });
  };
  const remove = (r: Dnat) =>
    api.updateSpec('nat-gateways', id, (s) => {
      const left = (s.dnat ?? []).filter((x) => !(x.protocol === r.protocol && x.port === r.port));
      if (left.length === (s.dnat ?? []).length) throw new Error(`${r.protocol} port ${r.port} is no longer forwarded.`);
      s.dnat = left;
    });
  return (
    <section class="card" data-testid="nat-forwards">
      <header class="card-head">
        <h2>Port forwards</h2>
        <button type="button" data-testid="dnat-add"
          onClick={() => d.open(<FormDialog title={`Forward a port of ${gw.metadata.name}`} submit="Add port forward" fields={fields} apply={add} onClose={d.close} onDone={d.done} />)}>
          Add port forward
        </button>
      </header>
      <p class="muted small">Connections to a port of the gateway’s elastic IP (<RefName kind="elastic-ips" id={gw.spec.elastic_ip} route="/elastic-ips" />) go on to an address in the VPC.</p>
      {rules.length ? (
        <div class="scroll-x">
          <table class="small" data-testid="dnat-rules">
            <thead><tr><th>Protocol</th><th>Port</th><th>Goes to</th><th><span class="sr-only">Actions</span></th></tr></thead>
            <tbody>
              {rules.map((r) => (
                <tr data-testid="dnat" data-port={r.port}>
                  <td>{r.protocol.toUpperCase()}</td>
                  <td>{r.port}</td>
                  <td><Trunc text={`${r.to_ip}:${r.to_port}`} /></td>
                  <td>
                    <button type="button" class="link danger" data-testid="dnat-remove"
                      onClick={() => d.open(
                        <Confirm title="Remove port forward" confirmLabel="Remove" onClose={d.close}
                          body={<>Stop forwarding {r.protocol.toUpperCase()} port <b>{r.port}</b> to {r.to_ip}:{r.to_port}? Its open connections break.</>}
                          onConfirm={async () => { await remove(r); reload(); }} />,
                      )}>
                      Remove
                    </button>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ) : (
        <p class="muted">No port forwards: the gateway only translates the VPC’s outgoing traffic.</p>
      )}
      {d.dialog}
    </section>
  );
}

// ---------------------------------------------------------------- load balancers

const PROTOCOLS: { value: S['LbProtocol']; label: string }[] = [
  { value: 'tcp', label: 'TCP (connections passed through)' },
  { value: 'udp', label: 'UDP (datagrams passed through)' },
  { value: 'http', label: 'HTTP (requests proxied)' },
  { value: 'https', label: 'HTTPS (TLS ends here, then HTTP)' },
];
const ALGORITHMS: { value: S['LbAlgorithm']; label: string }[] = [
  { value: 'round_robin', label: 'round robin' },
  { value: 'least_connections', label: 'least connections (not UDP)' },
  { value: 'source_ip', label: 'source IP (a client stays on one member)' },
];
const PERSISTENCE: { value: S['Persistence']; label: string }[] = [
  { value: 'none', label: 'none' },
  { value: 'source_ip', label: 'source IP (30 minutes)' },
  { value: 'http_cookie', label: 'HTTP cookie (HTTP and HTTPS)' },
  { value: 'app_cookie', label: 'the application’s cookie (HTTP and HTTPS)' },
];
const PEM_FIELDS: Field[] = [
  { name: 'certificate', label: 'Certificate chain (PEM)', type: 'textarea', required: true, placeholder: '-----BEGIN CERTIFICATE-----' },
  { name: 'key', label: 'Its private key (PEM; kept as a secret, never shown again)', type: 'textarea', required: true, placeholder: '-----BEGIN PRIVATE KEY-----' },
];
const pem = (v: Values, k: string, what: string) => {
  const t = String(v[k] ?? '').trim();
  if (!t.includes('-----BEGIN ')) throw new Error(`The ${what} is not PEM text (-----BEGIN …).`);
  return t + '\n';
};

/** The spec's listener of that name, or an error saying it is gone. */
function listenerIn(s: S['LoadBalancerSpec'], name: string): Listener {
  const l = (s.listeners ?? []).find((x) => x.name === name);
  if (!l) throw new Error(`The listener ${name} is no longer there.`);
  return l;
}
/** The same member: by VM, else NIC, else address; and port. */
function sameMember(a: Member, b: Member) {
  if (a.port !== b.port) return false;
  if (a.vm) return b.vm === a.vm;
  if (a.nic) return b.nic === a.nic;
  return !b.vm && !b.nic && (b.address ?? '') === (a.address ?? '');
}
/** A listener's timeouts (left out: HAProxy's defaults), in the form and its summary. */
const TIMEOUTS = [
  ['timeout_client_data_ms', 'Client silent at most (ms; empty: 60000)'],
  ['timeout_member_connect_ms', 'Connecting to a member at most (ms; empty: 5000)'],
  ['timeout_member_data_ms', 'Member silent at most (ms; empty: 60000)'],
] as const;
function timeoutsText(l: Listener) {
  const set = [['client', l.timeout_client_data_ms], ['connect', l.timeout_member_connect_ms], ['member', l.timeout_member_data_ms]] as const;
  const parts = set.filter(([, ms]) => ms != null).map(([what, ms]) => `${what} ${ms} ms`);
  return parts.length ? `, timeouts ${parts.join(', ')}` : '';
}
/** The checks a listener takes: udp_connect alone for udp; https only for tcp (TLS members). */
function checksFor(l: Listener) {
  if (l.protocol === 'udp') return [{ value: 'udp_connect', label: 'UDP: a datagram draws no “port unreachable”' }];
  const https = l.protocol === 'tcp' ? [{ value: 'https', label: 'HTTPS: the same over TLS (members that speak TLS)' }] : [];
  return [{ value: 'tcp', label: 'TCP: the member accepts a connection' }, { value: 'http', label: 'HTTP: GET a path answers an expected code' }, ...https];
}
const checkFor = (l: Listener) => (l.protocol === 'udp' ? 'udp_connect' : l.protocol === 'http' || l.protocol === 'https' ? 'http' : 'tcp');
/** Where a rule sends what it matches. */
function ruleAction(r: NonNullable<Listener['rules']>[number]) {
  if (r.action === 'reject') return 'refused (403)';
  if (r.action === 'redirect') return `redirect ${r.redirect_code ?? 302} to ${r.redirect_url ?? ''}`;
  return `${(r.members ?? []).length} member(s)`;
}
function healthText(h: Health | undefined) {
  if (!h) return 'no health check (every member counts as up)';
  const what = h.type === 'tcp' ? 'TCP connect' : h.type === 'udp_connect' ? 'UDP datagram, no “port unreachable”' : `${h.type.toUpperCase()} GET ${h.path ?? '/'} expecting ${h.expected_codes ?? '200-399'}`;
  return `${what} every ${h.interval_secs ?? 2}s (timeout ${h.timeout_secs ?? 1}s, down after ${h.fall ?? 2} failures, up after ${h.rise ?? 2} passes)`;
}

export function LbListeners({ lb, reload }: { lb: Obj<'load-balancers'>; reload: () => void }) {
  const d = useDialog(reload);
  const id = lb.metadata.id;
  const listeners = lb.spec.listeners ?? [];
  const edit = (change: (s: S['LoadBalancerSpec']) => void) => api.updateSpec('load-balancers', id, change);
  const lbObj = lb as unknown as AnyObj;

  const addListener = () => {
    const fields: Field[] = [
      { name: 'protocol', label: 'Protocol', type: 'select', required: true, options: PROTOCOLS, initial: 'tcp' },
      { name: 'port', label: 'Port (on the load balancer’s address)', type: 'number', required: true, placeholder: '80' },
      { name: 'name', label: 'Name (letters, digits, - and _; default PROTOCOL-PORT)', placeholder: 'http' },
      { name: 'algorithm', label: 'Spread new connections by', type: 'select', required: true, options: ALGORITHMS, initial: 'round_robin' },
      { name: 'persistence', label: 'Keep a client on its member', type: 'select', required: true, options: PERSISTENCE, initial: 'none' },
      { name: 'persistence_cookie', label: 'The application’s cookie (e.g. JSESSIONID)', required: true, when: (v) => v.persistence === 'app_cookie' },
      { name: 'connection_limit', label: 'Connection limit (0 or empty: none)', type: 'number', when: (v) => v.protocol !== 'udp' },
      ...TIMEOUTS.map(([key, label]) => ({ name: key, label, type: 'number' as const, when: (v: Values) => v.protocol !== 'udp' })),
      ...PEM_FIELDS.map((f) => ({ ...f, when: (v: Values) => v.protocol === 'https' })),
    ];
    const apply = (v: Values) => {
      const protocol = str(v, 'protocol') as S['LbProtocol'];
      const p = port(v, 'port');
      const l: Listener = {
        name: str(v, 'name') || `${protocol}-${p}`,
        protocol,
        port: p,
        algorithm: str(v, 'algorithm') as S['LbAlgorithm'],
        persistence: str(v, 'persistence') as S['Persistence'],
        ...(str(v, 'persistence') === 'app_cookie' ? { persistence_cookie: str(v, 'persistence_cookie') } : {}),
      };
      if (protocol !== 'udp') l.connection_limit = int(v, 'connection_limit', 'Connection limit', 0, 4294967295, 0);
      for (const [key, label] of TIMEOUTS) {
        if (protocol !== 'udp' && num(v, key) !== undefined) l[key] = int(v, key, label, 1, 24 * 86400000);
      }
      if (protocol === 'https') {
        l.certificate = pem(v, 'certificate', 'certificate');
        l.key = pem(v, 'key', 'key');
      }
      return edit((s) => {
        s.listeners = [...(s.listeners ?? []), l];
      });
    };
    d.open(<FormDialog title={`Add a listener to ${lb.metadata.name}`} submit="Add listener" fields={fields} apply={apply} onClose={d.close} onDone={d.done} />);
  };

  const addMember = (l: Listener) => {
    const fields: Field[] = [
      { name: 'by', label: 'Member', type: 'select', required: true, initial: 'vm', options: [{ value: 'vm', label: 'a virtual machine (its interface in the VPC)' }, { value: 'nic', label: 'a network interface of the VPC' }, { value: 'address', label: 'an address' }] },
      { name: 'vm', label: 'Virtual machine', type: 'select', ref: 'instances', byId: true, required: true, when: (v) => v.by === 'vm', refFilter: (o) => sameProject(o, lbObj) },
      { name: 'nic', label: 'Network interface', type: 'select', ref: 'network-interfaces', byId: true, refLabel: nicLabel, required: true, when: (v) => v.by === 'nic', refFilter: (o) => nicOf(o).vpc === lb.status.vpc && sameProject(o, lbObj) && !nicOf(o).load_balancer },
      { name: 'address', label: 'Address (in the VPC)', required: true, placeholder: '10.10.1.20', when: (v) => v.by === 'address' },
      { name: 'port', label: 'Its port', type: 'number', required: true, initial: String(l.port) },
      { name: 'weight', label: 'Weight (0–256; relative share of new connections)', type: 'number', initial: '1' },
    ];
    const apply = (v: Values) => {
      const m: Member = { port: port(v, 'port'), weight: int(v, 'weight', 'Weight', 0, 256, 1) };
      const by = str(v, 'by');
      const which = str(v, by);
      if (!which) throw new Error(by === 'address' ? 'Give the member’s address.' : `Choose the ${by === 'vm' ? 'virtual machine' : 'network interface'}.`);
      if (by === 'vm') m.vm = which;
      else if (by === 'nic') m.nic = which;
      else m.address = which;
      return edit((s) => {
        const x = listenerIn(s, l.name);
        x.members = [...(x.members ?? []), m];
      });
    };
    d.open(<FormDialog title={`Add a member to listener ${l.name}`} submit="Add member" fields={fields} apply={apply} onClose={d.close} onDone={d.done} />);
  };

  const setHealth = (l: Listener) => {
    const h = l.health;
    const fields: Field[] = [
      { name: 'type', label: 'Check', type: 'select', required: true, initial: h?.type ?? checkFor(l), options: checksFor(l) },
      { name: 'path', label: 'Path', initial: h?.path ?? '/', when: (v) => v.type === 'http' || v.type === 'https' },
      { name: 'expected_codes', label: 'Expected codes (200, 200,204 or 200-299)', initial: h?.expected_codes ?? '200-399', when: (v) => v.type === 'http' || v.type === 'https' },
      { name: 'interval_secs', label: 'Every (seconds, 1–3600)', type: 'number', initial: String(h?.interval_secs ?? 2) },
      { name: 'timeout_secs', label: 'Timeout (seconds, 1–3600)', type: 'number', initial: String(h?.timeout_secs ?? 1) },
      { name: 'fall', label: 'Down after this many failed checks in a row (1–10)', type: 'number', initial: String(h?.fall ?? 2) },
      { name: 'rise', label: 'Up again after this many good ones (1–10)', type: 'number', initial: String(h?.rise ?? 2) },
    ];
    const apply = (v: Values) => {
      const type = str(v, 'type') as S['HealthKind'];
      const http = type === 'http' || type === 'https';
      const path = http ? str(v, 'path') || '/' : '/';
      if (!path.startsWith('/')) throw new Error('The path starts with /.');
      const expected_codes = http ? str(v, 'expected_codes') || '200-399' : '200-399';
      const monitor: Health = {
        type, path, expected_codes,
        interval_secs: int(v, 'interval_secs', 'Every', 1, 3600, 2),
        timeout_secs: int(v, 'timeout_secs', 'Timeout', 1, 3600, 1),
        fall: int(v, 'fall', 'Down after', 1, 10, 2),
        rise: int(v, 'rise', 'Up again after', 1, 10, 2),
      };
      return edit((s) => {
        listenerIn(s, l.name).health = monitor;
      });
    };
    d.open(<FormDialog title={`Health check of listener ${l.name}`} submit="Save health check" fields={fields} apply={apply} onClose={d.close} onDone={d.done} />);
  };

  const setWeight = (l: Listener, m: Member) =>
    d.open(
      <FormDialog title={`Weight of a member of ${l.name}`} submit="Save" onClose={d.close} onDone={d.done}
        fields={[{ name: 'weight', label: 'Weight (0–256; 0 drains it)', type: 'number', required: true, initial: String(m.weight ?? 1) }]}
        apply={(v) => {
          const w = int(v, 'weight', 'Weight', 0, 256);
          return edit((s) => {
            const x = (listenerIn(s, l.name).members ?? []).find((y) => sameMember(m, y));
            if (!x) throw new Error('That member is no longer there.');
            x.weight = w;
          });
        }} />,
    );

  const confirm = (title: string, label: string, body: ComponentChildren, change: (s: S['LoadBalancerSpec']) => void, danger = true) =>
    d.open(<Confirm title={title} confirmLabel={label} danger={danger} body={body} onClose={d.close} onConfirm={async () => { await edit(change); reload(); }} />);

  const memberName = (m: Member) =>
    m.vm ? <RefName kind="instances" id={m.vm} route="/vms" /> : m.nic ? <RefName kind="network-interfaces" id={m.nic} route="/nics" /> : <Trunc text={m.address ?? '—'} />;
  const dropMember = (l: Listener, m: Member) => (s: S['LoadBalancerSpec']) => {
    const x = listenerIn(s, l.name);
    const left = (x.members ?? []).filter((y) => !sameMember(m, y));
    if (left.length === (x.members ?? []).length) throw new Error('That member is no longer there.');
    x.members = left;
  };
  const drainMember = (l: Listener, m: Member) => (s: S['LoadBalancerSpec']) => {
    const x = (listenerIn(s, l.name).members ?? []).find((y) => sameMember(m, y));
    if (!x) throw new Error('That member is no longer there.');
    x.weight = 0;
  };

  return (
    <>
      <section class="card" data-testid="lb-listeners">
        <header class="card-head">
          <h2>Listeners</h2>
          <button type="button" data-testid="listener-add" onClick={addListener}>Add listener</button>
        </header>
        {!listeners.length && <p class="muted">No listeners yet: add one, then its members.</p>}
        {lb.status.message && <p class="note">{lb.status.message}</p>}
      </section>
      {listeners.map((l) => {
        const st = (lb.status.listeners ?? []).find((x) => x.name === l.name);
        const members = l.members ?? [];
        return (
          <section class="card" data-testid="listener" data-name={l.name}>
            <header class="card-head">
              <h2 class="trunc" title={l.name}>
                {l.name} — {l.protocol.toUpperCase()} :{l.port}
              </h2>
              <span class="row-actions">
                <button type="button" data-testid="member-add" onClick={() => addMember(l)}>Add member</button>
                {l.protocol !== 'udp' && <button type="button" data-testid="health-set" onClick={() => setHealth(l)}>Health check</button>}
                {l.protocol === 'https' && (
                  <button type="button" data-testid="certificate-set"
                    onClick={() => d.open(
                      <FormDialog title={`Certificate of listener ${l.name}`} submit="Replace certificate" fields={PEM_FIELDS} onClose={d.close} onDone={d.done}
                        apply={(v) => {
                          const certificate = pem(v, 'certificate', 'certificate');
                          const key = pem(v, 'key', 'key');
                          return edit((s) => { const x = listenerIn(s, l.name); x.certificate = certificate; x.key = key; });
                        }} />,
                    )}>
                    Certificate
                  </button>
                )}
                <button type="button" class="danger" data-testid="listener-remove"
                  onClick={() => confirm('Remove listener', 'Remove listener',
                    <>Remove listener <b>{l.name}</b> ({l.protocol.toUpperCase()} port {l.port}) with its {members.length} member(s){l.health ? ' and health check' : ''}? Its open connections end.</>,
                    (s) => {
                      listenerIn(s, l.name);
                      s.listeners = (s.listeners ?? []).filter((x) => x.name !== l.name);
                    })}>
                  Remove
                </button>
              </span>
            </header>
            <p class="muted small" data-testid="listener-summary">
              {(l.algorithm ?? 'round_robin').replace(/_/g, ' ')}
              {l.persistence && l.persistence !== 'none' ? `, ${l.persistence.replace(/_/g, ' ')} persistence${l.persistence_cookie ? ` (${l.persistence_cookie})` : ''}` : ''}
              {l.connection_limit ? `, at most ${l.connection_limit} connections` : ''}
              {timeoutsText(l)}; health: <span data-testid="health">{healthText(l.health)}</span>
              {l.health && (
                <>
                  {' '}
                  <button type="button" class="link danger" data-testid="health-clear"
                    onClick={() => confirm('Remove health check', 'Remove check', <>Remove the health check of <b>{l.name}</b>? Every member then counts as up, even a dead one.</>,
                      (s) => { delete listenerIn(s, l.name).health; })}>
                    remove
                  </button>
                </>
              )}
              {st && `; ${st.connections ?? 0} ${l.protocol === 'http' || l.protocol === 'https' ? 'requests' : 'connections'}`}
            </p>
            {members.length ? (
              <div class="scroll-x">
                <table class="small" data-testid="members">
                  <thead><tr><th>Member</th><th>Address</th><th>Port</th><th>Weight</th><th>Health</th><th><span class="sr-only">Actions</span></th></tr></thead>
                  <tbody>
                    {members.map((m) => {
                      const ms = st?.members?.find((x) => !x.rule && x.port === m.port && (!m.address || x.address === m.address));
                      return (
                        <tr data-testid="member">
                          <td>{memberName(m)}</td>
                          <td>{ms?.address ?? m.address ?? '—'}</td>
                          <td>{m.port}</td>
                          <td>{m.weight ?? 1}</td>
                          <td><Phase phase={ms?.health ?? ((m.weight ?? 1) === 0 ? 'drained' : 'unknown')} /></td>
                          <td>
                            <Buttons>
                              {(m.weight ?? 1) > 0 && (
                                <button type="button" class="link" data-testid="member-drain"
                                  onClick={() => confirm('Drain member', 'Drain', <>Give this member of <b>{l.name}</b> (port {m.port}) no new connections? Its open connections stay; set its weight again to bring it back.</>, drainMember(l, m), false)}>
                                  Drain
                                </button>
                              )}
                              <button type="button" class="link" data-testid="member-weight" onClick={() => setWeight(l, m)}>Weight</button>
                              <button type="button" class="link danger" data-testid="member-remove"
                                onClick={() => confirm('Remove member', 'Remove member', <>Remove this member (port {m.port}) from listener <b>{l.name}</b>? Its open connections end.</>, dropMember(l, m))}>
                                Remove
                              </button>
                            </Buttons>
                          </td>
                        </tr>
                      );
                    })}
                  </tbody>
                </table>
              </div>
            ) : (
              <p class="muted">No members: the listener has nowhere to send connections.</p>
            )}
            {(l.rules ?? []).length > 0 && (
              <div data-testid="l7-rules">
                <h3 class="small">Layer-7 rules (first match wins; change them with “Edit”)</h3>
                <ul class="plain small">
                  {(l.rules ?? []).map((r) => (
                    <li>
                      <Trunc text={`${r.name}: ${[r.host && `host ${r.host}`, r.path_prefix && `path ${r.path_prefix}…`].filter(Boolean).join(', ')} → ${ruleAction(r)}`} />
                    </li>
                  ))}
                </ul>
              </div>
            )}
          </section>
        );
      })}
      {d.dialog}
    </>
  );
}
