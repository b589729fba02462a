// Virtual machines: the live list, the create wizard and the detail page
// (power actions, resize, rebuild, migrate, serial console, metrics).
import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { api, type AnyObj, type Obj, type S } from '../api';
import {
  Confirm, ErrorBox, Link, Phase, Spinner, Trunc, ago, bytes, isAdmin, mib, navigate, parseLabels, useAction, usePoll,
  useModal, useSession, useTitle, when,
} from '../lib';
import {
  EditSpec, FormFields, KV, NotFound, ProjectName, Table, initialValues, list, opt, str, type Column, type Field, type Values,
} from '../resource';
import { FormDialog } from '../kinds';
import { MetricsPanel } from './chart';

type Vm = Obj<'instances'>;
type Nic = Obj<'network-interfaces'>;

/** What a VM is doing, when its phase has not caught up with its spec yet. */
export function transition(vm: Vm): string | null {
  const p = vm.status.phase ?? 'Pending';
  if (vm.metadata.deleting) return 'Deleting…';
  if (p === 'Failed' || p === 'Unschedulable' || p === 'HostDown') return null;
  const want = vm.spec.running !== false;
  if (want && p !== 'Running') return 'Starting…';
  if (!want && p !== 'Stopped') return 'Stopping…';
  if ((vm.spec.reboot_generation ?? 0) > (vm.status.reboot_generation ?? 0)) return 'Rebooting…';
  if ((vm.spec.rebuild_generation ?? 0) > (vm.status.rebuild_generation ?? 0)) return 'Rebuilding…';
  const m = vm.status.migration;
  if (m && !['Completed', 'Failed', 'Cancelled'].includes(String(m.phase))) return `Migrating (${m.phase})…`;
  return null;
}

function VmState({ vm }: { vm: Vm }) {
  const t = transition(vm);
  return (
    <span class="state">
      <Phase phase={vm.status.phase ?? 'Pending'} />
      {t && <span class="muted small"> {t}</span>}
    </span>
  );
}

function useNicsByVm() {
  const nics = usePoll((sig) => api.listAll('network-interfaces', {}, sig), [], 10000);
  const by = new Map<string, Nic[]>();
  for (const n of nics.data ?? []) {
    if (!n.spec.instance) continue;
    const l = by.get(n.spec.instance) ?? [];
    l.push(n);
    by.set(n.spec.instance, l);
  }
  return by;
}

export function VmList() {
  useTitle('Virtual machines');
  const s = useSession();
  const vms = usePoll((sig) => api.listAll('instances', {}, sig), [], 2500);
  const nics = useNicsByVm();
  const ips = (vm: Vm) => (nics.get(vm.metadata.id) ?? []).map((n) => n.status.ip).filter(Boolean).join(', ');
  const columns: Column<Vm>[] = [
    { label: 'Name', get: (o) => <Trunc text={o.metadata.name} />, text: (o) => o.metadata.name, cls: 'name' },
    { label: 'State', get: (o) => <VmState vm={o} />, text: (o) => o.status.phase ?? '' },
    { label: 'Flavor', get: (o) => <Trunc text={o.spec.flavor} />, text: (o) => o.spec.flavor },
    { label: 'Image', get: (o) => <Trunc text={o.spec.image} />, text: (o) => o.spec.image },
    { label: 'Address', get: (o) => <Trunc text={ips(o) || '—'} />, text: ips },
    { label: 'Host', get: (o) => <Trunc text={o.status.host ?? '—'} />, text: (o) => o.status.host ?? '' },
    ...(isAdmin(s) ? [{ label: 'Project', get: (o: Vm) => <ProjectName id={o.metadata.project} />, text: (o: Vm) => o.metadata.project ?? '' }] : []),
    { label: 'Created', get: (o) => <span title={when(o.metadata.created)}>{ago(o.metadata.created)}</span> },
  ];
  return (
    <section data-testid="page-instances">
      <header class="page-head">
        <h1>Virtual machines</h1>
        <Link to="/vms/new" class="button primary" data-testid="create-vm">Create virtual machine</Link>
      </header>
      <ErrorBox error={vms.error} />
      <Table<Vm> items={vms.data ?? []} loading={vms.loading} columns={columns} link={(o) => `/vms/${o.metadata.id}`} testid="vm-list" empty="No virtual machines yet." />
    </section>
  );
}

const CREATE_FIELDS: Field[] = [
  { name: 'name', label: 'Name', required: true, placeholder: 'web-1' },
  {
    name: 'image', label: 'Image', type: 'select', ref: 'images', required: true,
    refFilter: (o) => (o.status as S['ImageStatus']).phase === 'Active',
  },
  { name: 'flavor', label: 'Flavor', type: 'select', ref: 'flavors', required: true },
  { name: 'subnet', label: 'Subnet (primary network interface)', type: 'select', ref: 'subnets' },
  {
    name: 'security_groups', label: 'Security groups', type: 'multi', ref: 'security-groups',
    help: 'None: the VPC’s default group (members reach each other, nothing else gets in).',
    when: (v) => Boolean(v.subnet),
  },
  { name: 'ip', label: 'Fixed address (optional)', when: (v) => Boolean(v.subnet) },
  { name: 'ssh_keys', label: 'SSH public keys (one a line)', type: 'textarea', placeholder: 'ssh-ed25519 AAAA… user@host' },
  { name: 'user_data', label: 'User data (cloud-init: #cloud-config or a #! script)', type: 'textarea' },
  {
    name: 'volumes', label: 'Attach volumes', type: 'multi', ref: 'volumes',
    refFilter: (o) => !(o.spec as S['VolumeSpec']).instance && ['Available', 'Pending'].includes(String((o.status as S['VolumeStatus']).phase ?? '')),
  },
  { name: 'placement_group', label: 'Placement group', type: 'select', ref: 'placement-groups' },
  { name: 'running', label: 'Start it once created', type: 'checkbox', initial: true },
  { name: 'ha', label: 'High availability (restart on another host if its host is lost)', type: 'checkbox' },
  { name: 'labels', label: 'Labels (key=value, one a line)', type: 'textarea' },
];

const STEPS: { title: string; fields: string[] }[] = [
  { title: 'Name and image', fields: ['name', 'image'] },
  { title: 'Size', fields: ['flavor'] },
  { title: 'Network', fields: ['subnet', 'security_groups', 'ip'] },
  { title: 'Access', fields: ['ssh_keys', 'user_data'] },
  { title: 'Storage and options', fields: ['volumes', 'placement_group', 'running', 'ha', 'labels'] },
];

export function VmCreate() {
  useTitle('Create virtual machine');
  const [v, setV] = useState<Values>(() => initialValues(CREATE_FIELDS));
  const [progress, setProgress] = useState<string | null>(null);
  const act = useAction();
  // Security groups of the chosen subnet's VPC only.
  const subnets = usePoll((sig) => api.listAll('subnets', {}, sig), []);
  const vpcOf = (subnet: string) => subnets.data?.find((s) => s.metadata.name === subnet || s.metadata.id === subnet)?.spec.vpc;
  const fields = CREATE_FIELDS.map((f) =>
    f.name === 'security_groups' ? { ...f, refFilter: (o: AnyObj, vals: Values) => (o.spec as S['SecurityGroupSpec']).vpc === vpcOf(String(vals.subnet)) } : f,
  );
  return (
    <section data-testid="vm-create">
      <p class="crumbs"><Link to="/vms">Virtual machines</Link> /</p>
      <h1>Create virtual machine</h1>
      <form
        class="wizard"
        onSubmit={async (e) => {
          e.preventDefault();
          let id = '';
          const ok = await act.run(async () => {
            const spec: S['InstanceSpec'] = {
              image: str(v, 'image'),
              flavor: str(v, 'flavor'),
              running: Boolean(v.running),
              ha: Boolean(v.ha),
              ssh_keys: str(v, 'ssh_keys') ? str(v, 'ssh_keys').split('\n').map((l) => l.trim()).filter(Boolean) : undefined,
              user_data: opt(v, 'user_data') ? String(v.user_data) : undefined,
              placement_group: opt(v, 'placement_group'),
              nic: opt(v, 'subnet') ? { subnet: str(v, 'subnet'), ip: opt(v, 'ip'), security_groups: list(v, 'security_groups') } : undefined,
            };
            const labels = str(v, 'labels') ? parseLabels(str(v, 'labels')) : undefined;
            setProgress('Creating the virtual machine…');
            const vm = await api.create('instances', { metadata: { name: str(v, 'name'), ...(labels ? { labels } : {}) }, spec });
            id = vm.metadata.id;
            for (const vol of list(v, 'volumes')) {
              setProgress(`Attaching volume ${vol}…`);
              await api.updateSpec('volumes', vol, (s) => {
                s.instance = id;
              });
            }
          });
          setProgress(null);
          if (ok) navigate(`/console/vms/${id}`);
          else if (id) act.clear(), navigate(`/console/vms/${id}`);
        }}
      >
        {STEPS.map((step, i) => (
          <fieldset class="step" data-testid={`step-${i + 1}`}>
            <legend>
              <span class="step-no">{i + 1}</span> {step.title}
            </legend>
            <FormFields fields={fields.filter((f) => step.fields.includes(f.name))} values={v} set={setV} idPrefix="vm" />
          </fieldset>
        ))}
        <ErrorBox error={act.error} testid="form-error" />
        {progress && <Spinner label={progress} />}
        <div class="buttons">
          <Link to="/vms" class="button">Cancel</Link>
          <button type="submit" class="primary" disabled={act.busy} data-testid="submit">
            {act.busy ? 'Creating…' : 'Create virtual machine'}
          </button>
        </div>
      </form>
    </section>
  );
}

/** Waits until the VM reaches `phase` (or fails), reporting as it goes. */
async function waitPhase(id: string, phase: string, say: (s: string) => void, timeoutMs = 180000): Promise<Vm> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const vm = await api.get('instances', id);
    const p = vm.status.phase ?? 'Pending';
    if (p === phase) return vm;
    if (p === 'Failed') throw new Error(`The VM failed: ${vm.status.message ?? ''}`);
    if (Date.now() > end) throw new Error(`The VM did not reach ${phase} in time (it is ${p}).`);
    say(`${p}…`);
    await new Promise((r) => setTimeout(r, 1500));
  }
}

function ResizeDialog({ vm, onClose, onDone }: { vm: Vm; onClose: () => void; onDone: () => void }) {
  const [v, setV] = useState<Values>({ flavor: vm.spec.flavor, restart: true });
  const [progress, setProgress] = useState<string | null>(null);
  const act = useAction();
  const running = vm.spec.running !== false;
  return (
    <FormShell title={`Resize ${vm.metadata.name}`} onClose={onClose} busy={act.busy} submit="Resize" error={act.error} progress={progress}
      onSubmit={async () => {
        const ok = await act.run(async () => {
          const restart = running && Boolean(v.restart);
          if (restart) {
            setProgress('Stopping…');
            await api.updateSpec('instances', vm.metadata.id, (s) => { s.running = false; });
            await waitPhase(vm.metadata.id, 'Stopped', (p) => setProgress(`Stopping: ${p}`));
          }
          setProgress('Changing the flavor…');
          await api.updateSpec('instances', vm.metadata.id, (s) => { s.flavor = str(v, 'flavor'); });
          if (restart) {
            setProgress('Starting…');
            await api.updateSpec('instances', vm.metadata.id, (s) => { s.running = true; });
          }
        });
        setProgress(null);
        if (ok) onDone();
      }}>
      <FormFields values={v} set={setV} idPrefix="resize" fields={[
        { name: 'flavor', label: `New flavor (now ${vm.spec.flavor})`, type: 'select', ref: 'flavors', required: true },
        ...(running ? [{ name: 'restart', label: 'Stop it, resize it and start it again (a running VM cannot change flavor)', type: 'checkbox' as const }] : []),
      ]} />
    </FormShell>
  );
}

function FormShell(props: { title: string; onClose: () => void; onSubmit: () => void; busy: boolean; submit: string; error: string | null; progress?: string | null; children: JSX.Element | JSX.Element[]; danger?: boolean }) {
  return (
    <FormDialogShell {...props} />
  );
}
function FormDialogShell(props: { title: string; onClose: () => void; onSubmit: () => void; busy: boolean; submit: string; error: string | null; progress?: string | null; children: JSX.Element | JSX.Element[]; danger?: boolean }) {
  const ref = useModal();
  return (
    <dialog ref={ref} data-testid="form-dialog" aria-label={props.title} onCancel={(e) => { e.preventDefault(); if (!props.busy) props.onClose(); }}>
      <h2>{props.title}</h2>
      <form onSubmit={(e) => { e.preventDefault(); props.onSubmit(); }}>
        {props.children}
        <ErrorBox error={props.error} testid="form-error" />
        {props.progress && <Spinner label={props.progress} />}
        <div class="buttons">
          <button type="button" onClick={props.onClose} disabled={props.busy}>Cancel</button>
          <button type="submit" class={props.danger ? 'danger' : 'primary'} disabled={props.busy} data-testid="submit">{props.busy ? 'Working…' : props.submit}</button>
        </div>
      </form>
    </dialog>
  );
}

function ConsoleView({ vm }: { vm: Vm }) {
  const ref = useRef<HTMLDivElement>(null);
  const [state, setState] = useState('loading the terminal…');
  const [gen, setGen] = useState(0);
  useEffect(() => {
    let handle: { dispose(): void; focus(): void } | null = null;
    let alive = true;
    import('../terminal').then(
      (m) => {
        if (!alive || !ref.current) return;
        handle = m.openConsole(ref.current, vm.metadata.id, (s) => alive && setState(s));
        handle.focus();
      },
      (e) => setState('cannot load the terminal: ' + String(e)),
    );
    return () => {
      alive = false;
      handle?.dispose();
    };
  }, [vm.metadata.id, gen]);
  return (
    <section class="card console-card">
      <header class="card-head">
        <h2>Serial console</h2>
        <span class="muted small" data-testid="console-state">{state}</span>
        <button type="button" onClick={() => setGen((g) => g + 1)} data-testid="console-reconnect">Reconnect</button>
      </header>
      {vm.status.phase !== 'Running' && <p class="note">The VM is {vm.status.phase ?? 'Pending'}: the console is live only while it runs.</p>}
      <div class="terminal" ref={ref} data-testid="terminal" />
      <p class="muted small">Click the terminal and type; the keys go to the guest’s serial port. Press Enter for a prompt.</p>
    </section>
  );
}

function VmOverview({ vm, reload }: { vm: Vm; reload: () => void }) {
  const nics = usePoll((sig) => api.listAll('network-interfaces', {}, sig), [], 5000);
  const vols = usePoll((sig) => api.listAll('volumes', {}, sig), [], 5000);
  const mine = (nics.data ?? []).filter((n) => n.spec.instance === vm.metadata.id);
  const disks = (vols.data ?? []).filter((d) => d.spec.instance === vm.metadata.id || d.status.attached_to === vm.metadata.id);
  const [attach, setAttach] = useState(false);
  const [detach, setDetach] = useState<Obj<'volumes'> | null>(null);
  const m = vm.status.migration;
  return (
    <>
      <div class="cards">
        <div class="card">
          <h2>Details</h2>
          <KV testid="vm-details" value={{
            id: vm.metadata.id, flavor: vm.spec.flavor, image: vm.spec.image,
            size: `${vm.status.vcpus ?? 0} vCPUs, ${mib(vm.status.memory_mib ?? 0)}, ${vm.status.disk_gib ?? 0} GiB disk`,
            host: vm.status.host, accel: vm.status.accel, started: when(vm.status.started_at), stopped: vm.status.stopped_at ? when(vm.status.stopped_at) : undefined,
            created: when(vm.metadata.created), message: vm.status.message || undefined, ha: vm.spec.ha ? 'yes' : undefined,
          }} />
          {Object.keys(vm.metadata.labels ?? {}).length > 0 && (
            <>
              <h3>Labels</h3>
              <ul class="labels" data-testid="vm-labels">
                {Object.entries(vm.metadata.labels ?? {}).map(([k, v]) => (
                  <li><Trunc text={`${k}=${v}`} /></li>
                ))}
              </ul>
            </>
          )}
        </div>
        <div class="card">
          <h2>Network interfaces</h2>
          {!mine.length && <p class="muted">None.</p>}
          <ul class="plain">
            {mine.map((n) => (
              <li><Link to={`/nics/${n.metadata.id}`}><Trunc text={n.metadata.name} /></Link> <span class="muted">{n.status.ip} · {n.spec.subnet}{n.status.primary ? ' · primary' : ''}</span></li>
            ))}
          </ul>
        </div>
        <div class="card" data-testid="vm-volumes">
          <header class="card-head">
            <h2>Volumes</h2>
            <button type="button" onClick={() => setAttach(true)} data-testid="attach-volume">Attach volume</button>
          </header>
          {!disks.length && <p class="muted">None attached.</p>}
          <ul class="plain">
            {disks.map((d) => (
              <li data-testid="vm-volume" data-name={d.metadata.name}>
                <Link to={`/volumes/${d.metadata.id}`}><Trunc text={d.metadata.name} /></Link> <span class="muted">{bytes(d.spec.size_bytes)}</span> <Phase phase={d.status.phase} />
                <button type="button" class="link" onClick={() => setDetach(d)}>Detach</button>
              </li>
            ))}
          </ul>
        </div>
        {m && (
          <div class="card">
            <h2>Migration</h2>
            <KV value={m} />
          </div>
        )}
      </div>
      {attach && (
        <FormDialog title={`Attach a volume to ${vm.metadata.name}`} submit="Attach" onClose={() => setAttach(false)} onDone={() => { setAttach(false); vols.reload(); reload(); }}
          fields={[{ name: 'volume', label: 'Volume', type: 'select', ref: 'volumes', required: true, refFilter: (o) => !(o.spec as S['VolumeSpec']).instance }]}
          apply={(v) => api.updateSpec('volumes', str(v, 'volume'), (s) => { s.instance = vm.metadata.id; })} />
      )}
      {detach && (
        <Confirm title="Detach volume" confirmLabel="Detach" body={`Detach ${detach.metadata.name} from ${vm.metadata.name}? Unmount it in the guest first.`}
          onClose={() => setDetach(null)} onConfirm={() => api.updateSpec('volumes', detach.metadata.id, (s) => { s.instance = null; }).then(() => vols.reload())} />
      )}
    </>
  );
}

export function VmDetail({ id, tab }: { id: string; tab: string }) {
  const s = useSession();
  const q = usePoll((sig) => api.get('instances', id, sig), [id], 2500);
  const [dialog, setDialog] = useState<JSX.Element | null>(null);
  const act = useAction();
  const vm = q.data;
  useTitle(vm ? `VM ${vm.metadata.name}` : 'Virtual machine');
  if (!vm) {
    return (
      <section>
        <p class="crumbs"><Link to="/vms">Virtual machines</Link> /</p>
        {q.error ? <NotFound message={q.error} /> : <Spinner />}
      </section>
    );
  }
  const close = () => setDialog(null);
  const done = () => { setDialog(null); q.reload(); };
  const running = vm.spec.running !== false;
  const phase = vm.status.phase ?? 'Pending';
  const power = (label: string, f: (s: S['InstanceSpec']) => void, confirm?: string, danger = true) => () => {
    const run = () => api.updateSpec('instances', vm.metadata.id, f).then(() => q.reload());
    if (confirm) setDialog(<Confirm title={label} body={confirm} confirmLabel={label} danger={danger} onClose={close} onConfirm={run} />);
    else void act.run(run);
  };
  const t = transition(vm);
  const tabs = [
    { id: 'overview', label: 'Overview' },
    { id: 'console', label: 'Console' },
    { id: 'metrics', label: 'Metrics' },
  ];
  return (
    <section data-testid="vm-detail" data-id={vm.metadata.id}>
      <p class="crumbs"><Link to="/vms">Virtual machines</Link> /</p>
      <header class="page-head">
        <h1 class="trunc" title={vm.metadata.name} data-testid="detail-name">{vm.metadata.name}</h1>
        <Phase phase={phase} />
        {t && <Spinner label={t} />}
        <div class="actions">
          {!running && <button type="button" class="primary" data-testid="action-start" disabled={act.busy} onClick={power('Start', (s) => { s.running = true; })}>Start</button>}
          {running && <button type="button" data-testid="action-stop" onClick={power('Stop', (s) => { s.running = false; }, `Stop ${vm.metadata.name}? The guest is shut down.`)}>Stop</button>}
          {running && phase === 'Running' && (
            <button type="button" data-testid="action-reboot" onClick={power('Reboot', (s) => { s.reboot_generation = (s.reboot_generation ?? 0) + 1; s.reboot_hard = false; }, `Reboot ${vm.metadata.name}?`, false)}>Reboot</button>
          )}
          {running && phase === 'Running' && (
            <button type="button" data-testid="action-hard-reboot" onClick={power('Hard reboot', (s) => { s.reboot_generation = (s.reboot_generation ?? 0) + 1; s.reboot_hard = true; }, `Reset ${vm.metadata.name} at once (like pressing its reset button)?`)}>Hard reboot</button>
          )}
          <button type="button" data-testid="action-resize" onClick={() => setDialog(<ResizeDialog vm={vm} onClose={close} onDone={done} />)}>Resize</button>
          <button type="button" data-testid="action-rebuild" onClick={() => setDialog(
            <FormDialog title={`Rebuild ${vm.metadata.name}`} submit="Rebuild" onClose={close} onDone={done}
              fields={[{ name: 'image', label: 'Image', type: 'select', ref: 'images', required: true, initial: vm.spec.image, refFilter: (o) => (o.status as S['ImageStatus']).phase === 'Active' }]}
              apply={(v) => api.updateSpec('instances', vm.metadata.id, (s) => { s.image = str(v, 'image'); s.rebuild_generation = (s.rebuild_generation ?? 0) + 1; })}>
              <p class="note">The root disk is replaced by a fresh copy of the image: what was on it is lost. Addresses, volumes and elastic IPs stay.</p>
            </FormDialog>,
          )}>Rebuild</button>
          {isAdmin(s) && running && phase === 'Running' && (
            <button type="button" data-testid="action-migrate" onClick={() => setDialog(
              <FormDialog title={`Migrate ${vm.metadata.name}`} submit="Migrate" onClose={close} onDone={done}
                fields={[{ name: 'to', label: 'Target host (none: the scheduler picks)', type: 'select', ref: 'hosts', refFilter: (h) => h.metadata.id !== vm.status.host && h.metadata.name !== vm.status.host }]}
                apply={(v) => api.updateSpec('instances', vm.metadata.id, (s) => {
                  const last = Math.max(s.migration?.request ?? 0, vm.status.migration?.request ?? 0);
                  s.migration = { request: last + 1, to: opt(v, 'to') ?? null };
                })}>
                <p class="muted">A live migration: the VM keeps running while its memory is copied.</p>
              </FormDialog>,
            )}>Migrate</button>
          )}
          <button type="button" data-testid="action-edit" onClick={() => setDialog(<EditSpec kind="instances" obj={vm as unknown as AnyObj} onClose={close} onDone={done} />)}>Edit</button>
          <button type="button" class="danger" data-testid="action-delete" onClick={() => setDialog(
            <Confirm title="Delete virtual machine" body={<>Delete <b>{vm.metadata.name}</b> and its root disk? Attached volumes are detached and kept.</>}
              onClose={close} onConfirm={async () => { await api.remove('instances', vm.metadata.id); navigate('/console/vms'); }} />,
          )}>Delete</button>
        </div>
      </header>
      <ErrorBox error={act.error} />
      {q.error && <ErrorBox error={q.error} testid="refresh-error" />}
      {vm.status.message && (phase === 'Failed' || phase === 'Unschedulable' || phase === 'HostDown') && <div class="error">{vm.status.message}</div>}
      <nav class="tabs" aria-label="Sections">
        {tabs.map((x) => (
          <Link to={`/vms/${vm.metadata.id}${x.id === 'overview' ? '' : '/' + x.id}`} class={tab === x.id ? 'active' : ''} aria-current={tab === x.id ? 'page' : undefined} data-testid={`tab-${x.id}`}>{x.label}</Link>
        ))}
      </nav>
      {tab === 'console' ? <ConsoleView vm={vm} /> : tab === 'metrics' ? <MetricsPanel kind="instances" id={vm.metadata.id} /> : (
        <>
          <VmOverview vm={vm} reload={q.reload} />
          <MetricsPanel kind="instances" id={vm.metadata.id} series="cpu" />
        </>
      )}
      {dialog}
    </section>
  );
}
