// The definitions of the kinds shown by the generic resource pages.
import type { ComponentChildren } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, message, type AnyObj, type Obj, type Plural, type S } from './api';
import { Dialog, ErrorBox, Link, Phase, Spinner, Trunc, bytes, mib, useAction, usePoll, when } from './lib';
import {
  FormFields, RefName, ageCol, initialValues, list, meta, nameCol, num, opt, phaseCol, refCol, str, textCol,
  type Action, type Field, type KindDef, type Values,
} from './resource';
import { SecurityGroupRules } from './pages/secgroups';
import { MetricsPanel } from './pages/chart';

const GiB = 1024 ** 3;
const NAME: Field = { name: 'name', label: 'Name', required: true, placeholder: 'letters, digits, . _ -' };
const LABELS: Field = { name: 'labels', label: 'Labels (key=value, one a line)', type: 'textarea' };
const PROJECT: Field = { name: 'project', label: 'Project (admins: create in another project)', ref: 'projects', type: 'select', adminOnly: true };
const withProject = <T extends { metadata: { name: string } }>(body: T, v: Values, admin: boolean): T => {
  const project = admin ? opt(v, 'project') : undefined;
  return project ? { ...body, metadata: { ...body.metadata, project } } : body;
};

/** A dialog asking for a few values, then running `apply` with them. */
export function FormDialog(props: {
  title: string;
  fields: Field[];
  submit: string;
  apply: (v: Values) => Promise<unknown>;
  onClose: () => void;
  onDone: () => void;
  children?: ComponentChildren;
}) {
  const [v, setV] = useState<Values>(() => initialValues(props.fields));
  const act = useAction();
  return (
    <Dialog title={props.title} onClose={props.onClose} testid="form-dialog">
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (await act.run(() => props.apply(v))) props.onDone();
        }}
      >
        {props.children}
        <FormFields fields={props.fields} values={v} set={setV} idPrefix="dlg" />
        <ErrorBox error={act.error} testid="form-error" />
        <div class="buttons">
          <button type="button" onClick={props.onClose}>Cancel</button>
          <button type="submit" class="primary" disabled={act.busy} data-testid="submit">{act.busy ? 'Working…' : props.submit}</button>
        </div>
      </form>
    </Dialog>
  );
}

/** Shows a secret once, with a copy button. */
export function Secret({ label, value, testid }: { label: string; value: string; testid: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <div class="field">
      <label for={testid}>{label}</label>
      <div class="secret">
        <input id={testid} readOnly value={value} data-testid={testid} onFocus={(e) => (e.target as HTMLInputElement).select()} />
        <button type="button" onClick={() => navigator.clipboard?.writeText(value).then(() => setCopied(true))}>{copied ? 'Copied' : 'Copy'}</button>
      </div>
    </div>
  );
}

/** The forms inside networking specs (routes, port forwards, listeners): a chunk of
 * their own, loaded the first time such a page opens. */
type NetFormsModule = typeof import('./pages/netforms');
let netForms: Promise<NetFormsModule> | null = null;
function NetForms({ render }: { render: (m: NetFormsModule) => ComponentChildren }) {
  const [m, setM] = useState<NetFormsModule | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let alive = true;
    (netForms ??= import('./pages/netforms')).then(
      (x) => alive && setM(x),
      (e) => {
        netForms = null;
        if (alive) setError(`Cannot load the forms of this page (${message(e)}); reload the page.`);
      },
    );
    return () => {
      alive = false;
    };
  }, []);
  if (error) return <ErrorBox error={error} />;
  return m ? <>{render(m)}</> : <Spinner />;
}

// ---------------------------------------------------------------- storage
const attachVolume: Action<Obj<'volumes'>> = {
  label: 'Attach',
  testid: 'action-attach',
  show: (o) => !o.spec.instance,
  dialog: (o, close, done) => (
    <FormDialog title={`Attach ${o.metadata.name}`} submit="Attach" onClose={close} onDone={done}
      fields={[{ name: 'instance', label: 'Virtual machine', type: 'select', ref: 'instances', required: true }]}
      apply={(v) => api.updateSpec('volumes', o.metadata.id, (s) => { s.instance = str(v, 'instance'); })} />
  ),
};
const volumes: KindDef<'volumes'> = {
  kind: 'volumes', title: 'Volumes', singular: 'Volume', route: '/volumes',
  columns: [
    nameCol(), phaseCol(),
    textCol('Size', (o) => bytes(o.spec.size_bytes)),
    refCol('Attached to', 'instances', (o) => o.spec.instance ?? o.status.attached_to, '/vms'),
    textCol('Pool', (o) => o.spec.pool ?? 'local'),
    ageCol(),
  ],
  fields: [
    NAME,
    { name: 'size_gib', label: 'Size (GiB)', type: 'number', required: true, initial: '1' },
    { name: 'pool', label: 'Pool', placeholder: 'local' },
    { name: 'source', label: 'Content', type: 'select', options: [{ value: 'snapshot', label: 'From a snapshot' }, { value: 'image', label: 'From an image' }] },
    { name: 'snapshot', label: 'Snapshot', type: 'select', ref: 'snapshots', when: (v) => v.source === 'snapshot' },
    { name: 'image', label: 'Image', type: 'select', ref: 'images', when: (v) => v.source === 'image' },
    { name: 'bootable', label: 'Bootable', type: 'checkbox' },
    { name: 'instance', label: 'Attach to virtual machine', type: 'select', ref: 'instances' },
    LABELS, PROJECT,
  ],
  toBody: (v, admin) =>
    withProject({
      metadata: meta(v),
      spec: {
        size_bytes: Math.round((num(v, 'size_gib') ?? 1) * GiB),
        pool: opt(v, 'pool'),
        bootable: Boolean(v.bootable),
        instance: opt(v, 'instance'),
        source: v.source === 'snapshot' ? { snapshot: str(v, 'snapshot') } : v.source === 'image' ? { image: str(v, 'image') } : undefined,
      },
    }, v, admin),
  actions: [
    attachVolume,
    {
      label: 'Detach', danger: true, testid: 'action-detach', show: (o) => Boolean(o.spec.instance),
      confirm: (o) => `Detach ${o.metadata.name} from ${o.spec.instance}? Unmount it in the guest first.`,
      run: (o) => api.updateSpec('volumes', o.metadata.id, (s) => { s.instance = null; }),
    },
    {
      label: 'Extend', testid: 'action-extend',
      dialog: (o, close, done) => (
        <FormDialog title={`Extend ${o.metadata.name}`} submit="Extend" onClose={close} onDone={done}
          fields={[{ name: 'size_gib', label: `New size (GiB; now ${(o.spec.size_bytes / GiB).toFixed(2)})`, type: 'number', required: true }]}
          apply={(v) => api.updateSpec('volumes', o.metadata.id, (s) => { s.size_bytes = Math.round((num(v, 'size_gib') ?? 0) * GiB); })} />
      ),
    },
    {
      label: 'Snapshot', testid: 'action-snapshot',
      dialog: (o, close, done) => (
        <FormDialog title={`Snapshot ${o.metadata.name}`} submit="Take snapshot" onClose={close} onDone={done} fields={[NAME]}
          apply={(v) => api.create('snapshots', { metadata: { name: str(v, 'name') }, spec: { volume: o.metadata.id } })} />
      ),
    },
    {
      label: 'Restore', testid: 'action-restore', show: (o) => !o.spec.instance,
      dialog: (o, close, done) => (
        <FormDialog title={`Restore ${o.metadata.name}`} submit="Restore" onClose={close} onDone={done}
          fields={[{ name: 'snapshot', label: 'Snapshot of this volume', type: 'select', ref: 'snapshots', required: true, refFilter: (s) => (s.spec as S['SnapshotSpec']).volume === o.metadata.id }]}
          apply={(v) => api.updateSpec('volumes', o.metadata.id, (s) => {
            s.restore = { snapshot: str(v, 'snapshot'), generation: (s.restore?.generation ?? 0) + 1 };
          })}>
          <p class="note">The volume is rolled back to the snapshot: what was written since is lost.</p>
        </FormDialog>
      ),
    },
  ],
  detail: (o) => <MetricsPanel kind="volumes" id={o.metadata.id} />,
};

const snapshots: KindDef<'snapshots'> = {
  kind: 'snapshots', title: 'Snapshots', singular: 'Snapshot', route: '/snapshots',
  columns: [nameCol(), phaseCol(), refCol('Volume', 'volumes', (o) => o.spec.volume, '/volumes'), textCol('Size', (o) => bytes(o.status.size_bytes)), ageCol()],
  fields: [NAME, { name: 'volume', label: 'Volume', type: 'select', ref: 'volumes', required: true }, LABELS],
  toBody: (v) => ({ metadata: meta(v), spec: { volume: str(v, 'volume') } }),
  noEdit: true,
  actions: [
    {
      label: 'New volume from it', testid: 'action-clone',
      dialog: (o, close, done) => (
        <FormDialog title={`New volume from ${o.metadata.name}`} submit="Create volume" onClose={close} onDone={done}
          fields={[NAME, { name: 'size_gib', label: 'Size (GiB)', type: 'number', required: true, initial: String(Math.max(1, Math.ceil((o.status.size_bytes ?? GiB) / GiB))) }]}
          apply={(v) => api.create('volumes', { metadata: { name: str(v, 'name') }, spec: { size_bytes: Math.round((num(v, 'size_gib') ?? 1) * GiB), source: { snapshot: o.metadata.id } } })} />
      ),
    },
  ],
};

const snapshotPolicies: KindDef<'snapshot-policies'> = {
  kind: 'snapshot-policies', title: 'Snapshot policies', singular: 'Snapshot policy', route: '/snapshot-policies',
  columns: [nameCol(), textCol('Schedule (UTC)', (o) => o.spec.schedule), textCol('Keep', (o) => o.spec.keep), { label: 'Of', get: (o) => (o.spec.volume ? <RefName kind="volumes" id={o.spec.volume} route="/volumes" /> : <RefName kind="instances" id={o.spec.instance} route="/vms" />) }, textCol('Enabled', (o) => (o.spec.enabled === false ? 'no' : 'yes')), ageCol()],
  fields: [
    NAME,
    { name: 'of', label: 'Snapshot', type: 'select', required: true, options: [{ value: 'volume', label: 'a volume' }, { value: 'instance', label: 'all disks of a virtual machine' }], initial: 'volume' },
    { name: 'volume', label: 'Volume', type: 'select', ref: 'volumes', when: (v) => v.of !== 'instance' },
    { name: 'instance', label: 'Virtual machine', type: 'select', ref: 'instances', when: (v) => v.of === 'instance' },
    { name: 'schedule', label: 'Schedule (cron, UTC)', required: true, initial: '0 3 * * *' },
    { name: 'keep', label: 'Keep (1–100)', type: 'number', required: true, initial: '7' },
    { name: 'enabled', label: 'Enabled', type: 'checkbox', initial: true },
  ],
  toBody: (v) => ({
    metadata: meta(v),
    spec: {
      schedule: str(v, 'schedule'), keep: num(v, 'keep') ?? 7, enabled: Boolean(v.enabled),
      volume: v.of === 'instance' ? undefined : str(v, 'volume'), instance: v.of === 'instance' ? str(v, 'instance') : undefined,
    },
  }),
  actions: [
    { label: 'Disable', show: (o) => o.spec.enabled !== false, run: (o) => api.updateSpec('snapshot-policies', o.metadata.id, (s) => { s.enabled = false; }) },
    { label: 'Enable', show: (o) => o.spec.enabled === false, run: (o) => api.updateSpec('snapshot-policies', o.metadata.id, (s) => { s.enabled = true; }) },
  ],
};

const buckets: KindDef<'buckets'> = {
  kind: 'buckets', title: 'Buckets', singular: 'Bucket', route: '/buckets',
  columns: [
    nameCol(), phaseCol(), textCol('Visibility', (o) => o.spec.visibility ?? 'private'),
    textCol('Objects', (o) => o.status.usage?.objects), textCol('Size', (o) => (o.status.usage ? bytes(o.status.usage.bytes) : '—')), ageCol(),
  ],
  fields: [
    NAME,
    { name: 'visibility', label: 'Visibility', type: 'select', options: [{ value: 'private', label: 'private' }, { value: 'public-read', label: 'public-read (anyone may read)' }], initial: 'private' },
    { name: 'quota_gib', label: 'Size limit (GiB, optional)', type: 'number' },
    { name: 'quota_objects', label: 'Object limit (optional)', type: 'number' },
    LABELS, PROJECT,
  ],
  toBody: (v, admin) => withProject({
    metadata: meta(v),
    spec: {
      visibility: (str(v, 'visibility') || 'private') as S['Visibility'],
      quota_bytes: num(v, 'quota_gib') === undefined ? undefined : Math.round(num(v, 'quota_gib')! * GiB),
      quota_objects: num(v, 'quota_objects'),
    },
  }, v, admin),
  actions: [
    { label: 'Make public', show: (o) => o.spec.visibility !== 'public-read', confirm: (o) => `Anyone will be able to read and list the objects of ${o.metadata.name}.`, danger: true, run: (o) => api.updateSpec('buckets', o.metadata.id, (s) => { s.visibility = 'public-read'; }) },
    { label: 'Make private', show: (o) => o.spec.visibility === 'public-read', run: (o) => api.updateSpec('buckets', o.metadata.id, (s) => { s.visibility = 'private'; }) },
  ],
  detail: (o) => (
    <div class="card">
      <h2>Files</h2>
      <p>
        <Link to={`/buckets/${o.metadata.id}/files`} data-testid="browse-files" class="button">Browse files</Link>
      </p>
      {o.status.public_url && <p>Public URL: <code class="trunc" title={o.status.public_url}>{o.status.public_url}</code></p>}
      {o.status.endpoint && <p>S3 endpoint: <code>{o.status.endpoint}</code> (with an <Link to="/s3-keys">S3 key</Link>)</p>}
      {o.status.usage && <p>{o.status.usage.objects} objects, {bytes(o.status.usage.bytes)} (measured {when(o.status.usage.measured_at)})</p>}
    </div>
  ),
};

// ---------------------------------------------------------------- network
const vpcs: KindDef<'vpcs'> = {
  kind: 'vpcs', title: 'VPCs', singular: 'VPC', route: '/vpcs',
  columns: [nameCol(), phaseCol(), textCol('CIDR', (o) => o.spec.cidr), textCol('VNI', (o) => o.status.vni), ageCol()],
  fields: [NAME, { name: 'cidr', label: 'Address range (CIDR)', required: true, placeholder: '10.10.0.0/16' }, LABELS, PROJECT],
  toBody: (v, admin) => withProject({ metadata: meta(v), spec: { cidr: str(v, 'cidr') } }, v, admin),
  noEdit: true,
  detail: (o) => <Related kind="subnets" title="Subnets" filter={(s) => (s.spec as S['SubnetSpec']).vpc === o.metadata.id} route="/subnets" />,
};
const subnets: KindDef<'subnets'> = {
  kind: 'subnets', title: 'Subnets', singular: 'Subnet', route: '/subnets',
  columns: [nameCol(), phaseCol(), textCol('CIDR', (o) => o.spec.cidr), refCol('VPC', 'vpcs', (o) => o.spec.vpc, '/vpcs'), textCol('Gateway', (o) => o.status.gateway_ip), ageCol()],
  fields: [NAME, { name: 'vpc', label: 'VPC', type: 'select', ref: 'vpcs', required: true }, { name: 'cidr', label: 'Address range (CIDR)', required: true, placeholder: '10.10.1.0/24' }, LABELS, PROJECT],
  toBody: (v, admin) => withProject({ metadata: meta(v), spec: { vpc: str(v, 'vpc'), cidr: str(v, 'cidr') } }, v, admin),
  noEdit: true,
  detail: (o) => <Related kind="network-interfaces" title="Network interfaces" filter={(n) => (n.spec as S['NetworkInterfaceSpec']).subnet === o.metadata.id} route="/nics" />,
};
const securityGroups: KindDef<'security-groups'> = {
  kind: 'security-groups', title: 'Security groups', singular: 'Security group', route: '/security-groups',
  columns: [nameCol(), refCol('VPC', 'vpcs', (o) => o.spec.vpc, '/vpcs'), textCol('Rules', (o) => (o.spec.rules ?? []).length), ageCol()],
  fields: [NAME, { name: 'vpc', label: 'VPC', type: 'select', ref: 'vpcs', required: true }, LABELS, PROJECT],
  toBody: (v, admin) => withProject({ metadata: meta(v), spec: { vpc: str(v, 'vpc'), rules: [] } }, v, admin),
  detail: (o, reload) => <SecurityGroupRules group={o} onSaved={reload} />,
};
const nics: KindDef<'network-interfaces'> = {
  kind: 'network-interfaces', title: 'Network interfaces', singular: 'Network interface', route: '/nics',
  columns: [
    nameCol(), phaseCol(), textCol('Address', (o) => o.status.ip), refCol('Subnet', 'subnets', (o) => o.spec.subnet, '/subnets'),
    refCol('Virtual machine', 'instances', (o) => o.spec.instance, '/vms'),
    textCol('MAC', (o) => o.status.mac), ageCol(),
  ],
  fields: [
    NAME, { name: 'subnet', label: 'Subnet', type: 'select', ref: 'subnets', required: true }, { name: 'ip', label: 'Fixed address (optional)' },
    { name: 'security_groups', label: 'Security groups', type: 'multi', ref: 'security-groups' },
    { name: 'instance', label: 'Attach to virtual machine', type: 'select', ref: 'instances' }, LABELS, PROJECT,
  ],
  toBody: (v, admin) => withProject({ metadata: meta(v), spec: { subnet: str(v, 'subnet'), ip: opt(v, 'ip'), security_groups: list(v, 'security_groups'), instance: opt(v, 'instance') } }, v, admin),
  actions: [
    {
      label: 'Attach', show: (o) => !o.spec.instance,
      dialog: (o, close, done) => (
        <FormDialog title={`Attach ${o.metadata.name}`} submit="Attach" onClose={close} onDone={done}
          fields={[{ name: 'instance', label: 'Virtual machine', type: 'select', ref: 'instances', required: true }]}
          apply={(v) => api.updateSpec('network-interfaces', o.metadata.id, (s) => { s.instance = str(v, 'instance'); })} />
      ),
    },
    { label: 'Detach', danger: true, show: (o) => Boolean(o.spec.instance) && !o.status.primary, confirm: (o) => `Detach ${o.metadata.name} from its virtual machine?`, run: (o) => api.updateSpec('network-interfaces', o.metadata.id, (s) => { s.instance = null; }) },
    {
      label: 'Security groups',
      dialog: (o, close, done) => (
        <FormDialog title={`Security groups of ${o.metadata.name}`} submit="Save" onClose={close} onDone={done}
          fields={[{ name: 'security_groups', label: 'Security groups', type: 'multi', ref: 'security-groups', initial: o.spec.security_groups ?? [], refFilter: (g) => (g.spec as S['SecurityGroupSpec']).vpc === o.status.vpc }]}
          apply={(v) => api.updateSpec('network-interfaces', o.metadata.id, (s) => { s.security_groups = list(v, 'security_groups'); })} />
      ),
    },
  ],
};
const eips: KindDef<'elastic-ips'> = {
  kind: 'elastic-ips', title: 'Elastic IPs', singular: 'Elastic IP', route: '/elastic-ips',
  columns: [nameCol(), phaseCol(), textCol('Address', (o) => o.status.address), refCol('Bound to NIC', 'network-interfaces', (o) => o.spec.nic, '/nics'), textCol('Bandwidth', (o) => (o.spec.bandwidth_mbit ? `${o.spec.bandwidth_mbit} Mbit/s` : 'unlimited')), ageCol()],
  fields: [
    NAME, { name: 'network', label: 'External network (default: the first)', type: 'select', ref: 'external-networks' }, { name: 'address', label: 'Address (optional)' },
    { name: 'nic', label: 'Bind to network interface', type: 'select', ref: 'network-interfaces' }, { name: 'bandwidth_mbit', label: 'Bandwidth cap (Mbit/s, optional)', type: 'number' }, LABELS, PROJECT,
  ],
  toBody: (v, admin) => withProject({ metadata: meta(v), spec: { network: opt(v, 'network'), address: opt(v, 'address'), nic: opt(v, 'nic'), bandwidth_mbit: num(v, 'bandwidth_mbit') } }, v, admin),
  actions: [
    {
      label: 'Bind', show: (o) => !o.spec.nic,
      dialog: (o, close, done) => (
        <FormDialog title={`Bind ${o.metadata.name}`} submit="Bind" onClose={close} onDone={done}
          fields={[{ name: 'nic', label: 'Network interface', type: 'select', ref: 'network-interfaces', required: true }]}
          apply={(v) => api.updateSpec('elastic-ips', o.metadata.id, (s) => { s.nic = str(v, 'nic'); })} />
      ),
    },
    { label: 'Unbind', danger: true, show: (o) => Boolean(o.spec.nic), confirm: (o) => `Unbind ${o.metadata.name} (${o.status.address}) from its interface?`, run: (o) => api.updateSpec('elastic-ips', o.metadata.id, (s) => { s.nic = null; }) },
  ],
  detail: (o) => <MetricsPanel kind="elastic-ips" id={o.metadata.id} />,
};
const natGateways: KindDef<'nat-gateways'> = {
  kind: 'nat-gateways', title: 'NAT gateways', singular: 'NAT gateway', route: '/nat-gateways',
  columns: [nameCol(), phaseCol(), refCol('VPC', 'vpcs', (o) => o.spec.vpc, '/vpcs'), refCol('Elastic IP', 'elastic-ips', (o) => o.spec.elastic_ip, '/elastic-ips'), textCol('Port forwards', (o) => (o.spec.dnat ?? []).length), ageCol()],
  fields: [
    NAME, { name: 'vpc', label: 'VPC', type: 'select', ref: 'vpcs', required: true }, { name: 'elastic_ip', label: 'Elastic IP', type: 'select', ref: 'elastic-ips', required: true },
    { name: 'subnets', label: 'Subnets (none: the whole VPC)', type: 'multi', ref: 'subnets', refFilter: (s, v) => !v.vpc || (s.spec as S['SubnetSpec']).vpc === v.vpc || false }, LABELS, PROJECT,
  ],
  toBody: (v, admin) => withProject({ metadata: meta(v), spec: { vpc: str(v, 'vpc'), elastic_ip: str(v, 'elastic_ip'), subnets: list(v, 'subnets'), dnat: [] } }, v, admin),
  detail: (o, reload) => <NetForms render={(m) => <m.NatForwards gw={o} reload={reload} />} />,
};
const vips: KindDef<'vips'> = {
  kind: 'vips', title: 'Virtual IPs', singular: 'Virtual IP', route: '/vips',
  columns: [nameCol(), phaseCol(), textCol('Address', (o) => o.status.ip), refCol('Subnet', 'subnets', (o) => o.spec.subnet, '/subnets'), textCol('Held by', (o) => o.status.host), textCol('NICs', (o) => (o.spec.nics ?? []).length), ageCol()],
  fields: [NAME, { name: 'subnet', label: 'Subnet', type: 'select', ref: 'subnets', required: true }, { name: 'ip', label: 'Fixed address (optional)' }, { name: 'nics', label: 'Interfaces that may hold it', type: 'multi', ref: 'network-interfaces' }, LABELS, PROJECT],
  toBody: (v, admin) => withProject({ metadata: meta(v), spec: { subnet: str(v, 'subnet'), ip: opt(v, 'ip'), nics: list(v, 'nics') } }, v, admin),
};
const routeTables: KindDef<'route-tables'> = {
  kind: 'route-tables', title: 'Route tables', singular: 'Route table', route: '/route-tables',
  columns: [nameCol(), phaseCol(), refCol('VPC', 'vpcs', (o) => o.spec.vpc, '/vpcs'), textCol('Routes', (o) => (o.spec.routes ?? []).length), textCol('Subnets', (o) => (o.spec.subnets ?? []).join(', ')), ageCol()],
  fields: [NAME, { name: 'vpc', label: 'VPC', type: 'select', ref: 'vpcs', required: true }, { name: 'subnets', label: 'Subnets', type: 'multi', ref: 'subnets', refFilter: (s, v) => (s.spec as S['SubnetSpec']).vpc === v.vpc }, LABELS, PROJECT],
  toBody: (v, admin) => withProject({ metadata: meta(v), spec: { vpc: str(v, 'vpc'), subnets: list(v, 'subnets'), routes: [] } }, v, admin),
  detail: (o, reload) => <NetForms render={(m) => <m.RouteTableRoutes table={o} reload={reload} />} />,
};
const loadBalancers: KindDef<'load-balancers'> = {
  kind: 'load-balancers', title: 'Load balancers', singular: 'Load balancer', route: '/load-balancers',
  columns: [nameCol(), phaseCol(), textCol('Address', (o) => o.status.address), textCol('External', (o) => o.status.external_address || (o.spec.external ? '…' : '—')), textCol('Listeners', (o) => (o.spec.listeners ?? []).map((l) => `${l.protocol}:${l.port}`).join(', ')), textCol('Hosts', (o) => o.status.host || '—'), ageCol()],
  fields: [
    NAME, { name: 'subnet', label: 'Subnet', type: 'select', ref: 'subnets', required: true }, { name: 'external', label: 'Reachable from outside (elastic IP)', type: 'checkbox' },
    { name: 'replicas', label: 'Replicas: hosts serving it at once (1–4)', type: 'number', initial: '1' },
    { name: 'l_protocol', label: 'First listener: protocol', type: 'select', options: ['tcp', 'udp', 'http', 'https'].map((p) => ({ value: p, label: p })), initial: 'tcp' },
    { name: 'l_port', label: 'First listener: port', type: 'number', initial: '80' },
    { name: 'l_members', label: 'Members (virtual machines, on the same port)', type: 'multi', ref: 'instances' }, LABELS, PROJECT,
  ],
  toBody: (v, admin) => {
    const port = num(v, 'l_port');
    const protocol = str(v, 'l_protocol') as S['LbProtocol'];
    return withProject({
      metadata: meta(v),
      spec: {
        subnet: str(v, 'subnet'), external: Boolean(v.external), replicas: num(v, 'replicas'),
        listeners: port ? [{ name: `${protocol}-${port}`, port, protocol, members: list(v, 'l_members').map((vm) => ({ vm, port })) }] : [],
      },
    }, v, admin);
  },
  detail: (o, reload) => (
    <>
      <NetForms render={(m) => <m.LbListeners lb={o} reload={reload} />} />
      <MetricsPanel kind="load-balancers" id={o.metadata.id} />
    </>
  ),
};

const placementGroups: KindDef<'placement-groups'> = {
  kind: 'placement-groups', title: 'Placement groups', singular: 'Placement group', route: '/placement-groups',
  columns: [nameCol(), textCol('Policy', (o) => o.spec.policy ?? 'hard_anti_affinity'), ageCol()],
  fields: [NAME, { name: 'policy', label: 'Policy', type: 'select', options: [{ value: 'hard_anti_affinity', label: 'hard anti-affinity' }, { value: 'soft_anti_affinity', label: 'soft anti-affinity' }], initial: 'hard_anti_affinity' }, LABELS],
  toBody: (v) => ({ metadata: meta(v), spec: { policy: (str(v, 'policy') || 'hard_anti_affinity') as S['PlacementPolicy'] } }),
  noEdit: true,
};

// ---------------------------------------------------------------- access
const apiKeys: KindDef<'api-keys'> = {
  kind: 'api-keys', title: 'API keys', singular: 'API key', route: '/api-keys',
  intro: 'Keys for the CLI and the API (Authorization: Bearer …). The token is shown once, when the key is made.',
  columns: [nameCol(), textCol('Prefix', (o) => o.status.prefix), textCol('Role', (o) => o.status.role), textCol('Expires', (o) => (o.spec.expires_at ? when(o.spec.expires_at) : 'never')), ageCol()],
  fields: [NAME, { name: 'expires_at', label: 'Expires at (RFC 3339, optional)', placeholder: '2030-01-31T00:00:00Z' }],
  toBody: (v) => ({ metadata: meta(v), spec: { expires_at: opt(v, 'expires_at') } }),
  created: (c) => (
    <>
      <p class="note">Copy the token now: it is not stored and cannot be shown again.</p>
      <Secret label="Token" value={c.token} testid="secret-token" />
    </>
  ),
  noEdit: true,
};
const s3Keys: KindDef<'s3-keys'> = {
  kind: 's3-keys', title: 'S3 keys', singular: 'S3 key', route: '/s3-keys',
  intro: 'Access keys for the S3 endpoint of the object storage. The secret is shown once, when the key is made.',
  columns: [nameCol(), phaseCol(), textCol('Access key', (o) => o.status.access_key), textCol('Description', (o) => o.spec.description), ageCol()],
  fields: [NAME, { name: 'description', label: 'Description' }],
  toBody: (v) => ({ metadata: meta(v), spec: { description: opt(v, 'description') } }),
  created: (c) => (
    <>
      <p class="note">Copy the secret now: it cannot be shown again.</p>
      <Secret label="Access key" value={c.access_key} testid="secret-access" />
      <Secret label="Secret key" value={c.secret_key} testid="secret-secret" />
      <p>Endpoint: <code>{c.endpoint}</code></p>
    </>
  ),
  noEdit: true,
};

// ---------------------------------------------------------------- monitoring
const alarms: KindDef<'alarm-rules'> = {
  kind: 'alarm-rules', title: 'Alarms', singular: 'Alarm rule', route: '/alarms',
  columns: [
    nameCol(),
    { label: 'State', get: (o) => <Phase phase={o.status.state ?? 'ok'} />, text: (o) => o.status.state ?? 'ok' },
    textCol('Condition', (o) => `${o.spec.metric} ${o.spec.comparison ?? 'above'} ${o.spec.threshold} for ${o.spec.for_seconds ?? 60}s`),
    textCol('Severity', (o) => o.spec.severity ?? 'warning'), textCol('Watches', (o) => (o.status.resources ?? []).length), ageCol(),
  ],
  fields: [
    NAME,
    { name: 'metric', label: 'Metric', required: true, initial: 'cpu_percent', help: 'cpu_percent, memory_used_bytes, disk_write_bytes_per_second, … (or platform: conditions for admins)' },
    { name: 'comparison', label: 'Fires when the value is', type: 'select', options: [{ value: 'above', label: 'above' }, { value: 'below', label: 'below' }], initial: 'above' },
    { name: 'threshold', label: 'Threshold', type: 'number', required: true, initial: '90' },
    { name: 'for_seconds', label: 'For (seconds)', type: 'number', initial: '60' },
    { name: 'severity', label: 'Severity', type: 'select', options: ['info', 'warning', 'critical'].map((s) => ({ value: s, label: s })), initial: 'warning' },
    { name: 'instances', label: 'Virtual machines', type: 'multi', ref: 'instances' },
    { name: 'selector', label: 'And every VM with these labels (key=value lines)', type: 'textarea' },
    { name: 'webhook', label: 'Webhook URL (optional)', placeholder: 'https://…' },
  ],
  toBody: (v) => ({
    metadata: meta(v),
    spec: {
      metric: str(v, 'metric'), threshold: num(v, 'threshold') ?? 0, comparison: (str(v, 'comparison') || 'above') as S['Comparison'],
      for_seconds: num(v, 'for_seconds'), severity: (str(v, 'severity') || 'warning') as S['Severity'], instances: list(v, 'instances'),
      selector: str(v, 'selector') ? Object.fromEntries(str(v, 'selector').split('\n').filter(Boolean).map((l) => l.split('=').map((x) => x.trim()) as [string, string])) : undefined,
      webhooks: opt(v, 'webhook') ? [{ url: str(v, 'webhook') }] : [],
    },
  }),
  actions: [
    { label: 'Disable', show: (o) => o.spec.enabled !== false, run: (o) => api.updateSpec('alarm-rules', o.metadata.id, (s) => { s.enabled = false; }) },
    { label: 'Enable', show: (o) => o.spec.enabled === false, run: (o) => api.updateSpec('alarm-rules', o.metadata.id, (s) => { s.enabled = true; }) },
  ],
  detail: (o) => (
    <div class="card">
      <h2>Watched resources</h2>
      <table class="small">
        <thead><tr><th>Resource</th><th>State</th><th>Value</th><th>Breaching since</th></tr></thead>
        <tbody>
          {(o.status.resources ?? []).map((r) => (
            <tr><td><Trunc text={r.name} /></td><td><Phase phase={r.state} /></td><td>{r.value ?? 'no data'}</td><td>{r.breaching_since ? new Date(r.breaching_since * 1000).toLocaleString() : '—'}</td></tr>
          ))}
        </tbody>
      </table>
      <h2>History</h2>
      <ul class="plain">
        {[...(o.status.history ?? [])].reverse().map((h) => (
          <li><Trunc text={JSON.stringify(h)} /></li>
        ))}
      </ul>
    </div>
  ),
};

// ---------------------------------------------------------------- admin
export const PASSWORD_FIELDS: Field[] = [
  { name: 'password', label: 'New password (8–256 characters)', type: 'password', required: true },
  { name: 'again', label: 'The new password again', type: 'password', required: true },
];
const pct = (a: number, b: number) => (b > 0 ? Math.round((100 * a) / b) : 0);
export function Meter({ label, used, limit, fmt = String, testid }: { label: string; used: number; limit: number; fmt?: (n: number) => string; testid?: string }) {
  const p = pct(used, limit);
  return (
    <div class="meter" data-testid={testid}>
      <div class="meter-label">
        <span>{label}</span>
        <span class="muted">
          {fmt(used)} / {limit ? fmt(limit) : '∞'}
        </span>
      </div>
      <div class="bar" role="meter" aria-label={label} aria-valuemin={0} aria-valuemax={limit} aria-valuenow={used}>
        <span class={p >= 90 ? 'fill bad' : p >= 70 ? 'fill warn' : 'fill'} ref={(el) => { if (el) el.style.width = `${Math.min(100, p)}%`; }} />
      </div>
    </div>
  );
}

const hosts: KindDef<'hosts'> = {
  kind: 'hosts', title: 'Hosts', singular: 'Host', route: '/admin/hosts', adminOnly: true,
  columns: [
    nameCol(), phaseCol(),
    { label: 'vCPUs (allocated / limit)', get: (o) => <Meter label="" used={o.status.allocation?.vcpus ?? 0} limit={o.status.allocation?.vcpu_limit ?? o.spec.cpus} /> },
    { label: 'Memory (allocated / limit)', get: (o) => <Meter label="" used={o.status.allocation?.memory_mib ?? 0} limit={o.status.allocation?.memory_limit_mib ?? o.spec.memory_mib} fmt={mib} /> },
    textCol('CPU use', (o) => (o.status.usage ? `${o.status.usage.cpu_percent}%` : '—')),
    textCol('Memory use', (o) => (o.status.usage ? mib(o.status.usage.memory_used_mib) : '—')),
    textCol('VMs', (o) => o.status.allocation?.instances ?? 0),
    textCol('Schedulable', (o) => (o.spec.schedulable === false ? 'no (maintenance)' : 'yes')),
  ],
  noDelete: false,
  actions: [
    { label: 'Maintenance on', show: (o) => o.spec.schedulable !== false, confirm: (o) => `Stop placing new VMs on ${o.metadata.name}?`, danger: false, run: (o) => api.updateSpec('hosts', o.metadata.id, (s) => { s.schedulable = false; }) },
    { label: 'Maintenance off', show: (o) => o.spec.schedulable === false, run: (o) => api.updateSpec('hosts', o.metadata.id, (s) => { s.schedulable = true; }) },
  ],
  detail: (o) => (
    <>
      <div class="card">
        <h2>Capacity and allocation</h2>
        <Meter label="vCPUs allocated" used={o.status.allocation?.vcpus ?? 0} limit={o.status.allocation?.vcpu_limit ?? o.spec.cpus} />
        <Meter label="Memory allocated" used={o.status.allocation?.memory_mib ?? 0} limit={o.status.allocation?.memory_limit_mib ?? o.spec.memory_mib} fmt={mib} />
        <Meter label="Disk allocated" used={o.status.allocation?.disk_gib ?? 0} limit={o.spec.disk_gib} fmt={(n) => `${n} GiB`} />
        {o.status.usage && <Meter label="Memory in use" used={o.status.usage.memory_used_mib} limit={o.spec.memory_mib} fmt={mib} />}
        {o.status.usage && <Meter label="CPU busy" used={o.status.usage.cpu_percent} limit={100} fmt={(n) => `${n}%`} />}
      </div>
      <PoolsCard pools={o.status.pools ?? []} />
      <MetricsPanel kind="hosts" id={o.metadata.id} />
    </>
  ),
};
export function PoolsCard({ pools, host }: { pools: S['PoolReport'][]; host?: string }) {
  return (
    <div class="card" data-testid="pools">
      <h2>Storage pools{host ? ` of ${host}` : ''}</h2>
      {!pools.length && <p class="muted">No pool reported.</p>}
      {pools.map((p) => (
        <div class="pool">
          <Meter label={`${p.name} (${p.driver})${p.warning ? ' — over 80 % full' : ''}`} used={p.physical_used_bytes ?? 0} limit={p.capacity_bytes ?? 0} fmt={bytes} />
          <p class="muted small">
            {bytes(p.logical_allocated_bytes)} allocated (thin, ratio {(p.overcommit_ratio ?? 0).toFixed(2)}); {p.redundancy ?? ''} {p.health ? `· ${p.health}` : ''} {p.message ? `· ${p.message}` : ''}
          </p>
        </div>
      ))}
    </div>
  );
}

const QUOTA_KEYS: [keyof S['Quota'] & keyof S['Usage'], string, (n: number) => string][] = [
  ['instances', 'Virtual machines', String], ['vcpus', 'vCPUs', String], ['memory_mib', 'Memory', mib], ['volume_gib', 'Volume storage', (n) => `${n} GiB`],
  ['elastic_ips', 'Elastic IPs', String], ['images', 'Images', String], ['image_bytes', 'Image storage', bytes], ['load_balancers', 'Load balancers', String],
  ['listeners', 'Listeners', String], ['buckets', 'Buckets', String],
];
export function QuotaMeters({ project }: { project: Obj<'projects'> }) {
  const q = (project.spec.quota ?? {}) as Partial<S['Quota']>;
  const u = (project.status.usage ?? {}) as Partial<S['Usage']>;
  return (
    <div class="meters" data-testid="quota">
      {QUOTA_KEYS.map(([k, label, fmt]) => (
        <Meter label={label} used={u[k] ?? 0} limit={(q[k] as number | undefined) ?? 0} fmt={fmt} testid={`quota-${k}`} />
      ))}
    </div>
  );
}
const projects: KindDef<'projects'> = {
  kind: 'projects', title: 'Projects & quotas', singular: 'Project', route: '/admin/projects', adminOnly: true,
  columns: [nameCol(), textCol('Description', (o) => o.spec.description), textCol('VMs', (o) => `${o.status.usage?.instances ?? 0} / ${o.spec.quota?.instances ?? '—'}`), textCol('vCPUs', (o) => `${o.status.usage?.vcpus ?? 0} / ${o.spec.quota?.vcpus ?? '—'}`), textCol('Memory', (o) => `${mib(o.status.usage?.memory_mib ?? 0)} / ${mib(o.spec.quota?.memory_mib)}`), ageCol()],
  fields: [NAME, { name: 'description', label: 'Description' }, { name: 'instances', label: 'Quota: VMs', type: 'number', initial: '20' }, { name: 'vcpus', label: 'Quota: vCPUs', type: 'number', initial: '40' }, { name: 'memory_gib', label: 'Quota: memory (GiB)', type: 'number', initial: '80' }, { name: 'volume_gib', label: 'Quota: volumes (GiB)', type: 'number', initial: '2000' }, { name: 'elastic_ips', label: 'Quota: elastic IPs', type: 'number', initial: '10' }],
  toBody: (v) => ({ metadata: meta(v), spec: { description: str(v, 'description'), quota: { instances: num(v, 'instances') ?? 20, vcpus: num(v, 'vcpus') ?? 40, memory_mib: (num(v, 'memory_gib') ?? 80) * 1024, volume_gib: num(v, 'volume_gib') ?? 2000, elastic_ips: num(v, 'elastic_ips') ?? 10 } } }),
  actions: [
    {
      label: 'Edit quota',
      dialog: (o, close, done) => (
        <FormDialog title={`Quota of ${o.metadata.name}`} submit="Save" onClose={close} onDone={done}
          fields={QUOTA_KEYS.map(([k, label]) => ({ name: k, label: `${label} (${k})`, type: 'number' as const, initial: String(o.spec.quota?.[k] ?? '') }))}
          apply={(v) => api.updateSpec('projects', o.metadata.id, (s) => {
            const q = { ...(s.quota ?? {}) } as Record<string, number>;
            for (const [k] of QUOTA_KEYS) { const n = num(v, k); if (n !== undefined) q[k] = n; }
            s.quota = q as unknown as S['Quota'];
          })} />
      ),
    },
  ],
  detail: (o) => (
    <div class="card"><h2>Usage against quota</h2><QuotaMeters project={o} /></div>
  ),
};
const users: KindDef<'users'> = {
  kind: 'users', title: 'Users', singular: 'User', route: '/admin/users', adminOnly: true,
  columns: [nameCol(), textCol('Role', (o) => o.spec.role), refCol('Project', 'projects', (o) => o.spec.project, '/admin/projects'), ageCol()],
  fields: [NAME, { name: 'project', label: 'Project', type: 'select', ref: 'projects', required: true }, { name: 'role', label: 'Role', type: 'select', options: [{ value: 'member', label: 'member' }, { value: 'admin', label: 'admin' }], initial: 'member', required: true }],
  toBody: (v) => ({ metadata: meta(v), spec: { project: str(v, 'project'), role: (str(v, 'role') || 'member') as S['Role'] } }),
  actions: [
    {
      label: 'Set password', testid: 'action-set-password',
      dialog: (o, close, done) => (
        <FormDialog title={`Password of ${o.metadata.name}`} submit="Set password" onClose={close} onDone={done} fields={PASSWORD_FIELDS}
          apply={async (v) => {
            if (String(v.password) !== String(v.again)) throw new Error('The two passwords differ.');
            await api.setPassword(o.metadata.id, { password: String(v.password) });
          }}>
          <p class="muted">For the web console; the user's other console sessions end.</p>
        </FormDialog>
      ),
    },
  ],
  detail: (o) => <Related kind="api-keys" title="API keys of this user" filter={(k) => (k.status as S['ApiKeyStatus']).user === o.metadata.id} route="/api-keys" />,
};
const flavors: KindDef<'flavors'> = {
  kind: 'flavors', title: 'Flavors', singular: 'Flavor', route: '/admin/flavors', adminOnly: true,
  columns: [nameCol(), textCol('vCPUs', (o) => o.spec.vcpus), textCol('Memory', (o) => mib(o.spec.memory_mib)), textCol('Disk', (o) => `${o.spec.disk_gib} GiB`), textCol('GPUs', (o) => o.spec.gpus ?? 0), ageCol()],
  fields: [NAME, { name: 'vcpus', label: 'vCPUs', type: 'number', required: true, initial: '1' }, { name: 'memory_mib', label: 'Memory (MiB)', type: 'number', required: true, initial: '1024' }, { name: 'disk_gib', label: 'Disk (GiB)', type: 'number', required: true, initial: '10' }, { name: 'gpus', label: 'GPUs', type: 'number', initial: '0' }],
  toBody: (v) => ({ metadata: meta(v), spec: { vcpus: num(v, 'vcpus') ?? 1, memory_mib: num(v, 'memory_mib') ?? 1024, disk_gib: num(v, 'disk_gib') ?? 10, gpus: num(v, 'gpus') } }),
};
const externalNetworks: KindDef<'external-networks'> = {
  kind: 'external-networks', title: 'External networks', singular: 'External network', route: '/admin/external-networks', adminOnly: true,
  columns: [nameCol(), phaseCol(), textCol('CIDR', (o) => o.spec.cidr), textCol('Pool', (o) => o.spec.pool ?? 'all but the gateway'), textCol('Device', (o) => (o.spec.host_gateway ? 'host gateway' : o.spec.device)), ageCol()],
  fields: [NAME, { name: 'cidr', label: 'CIDR', required: true, placeholder: '203.0.113.0/24' }, { name: 'gateway', label: 'Gateway (optional)' }, { name: 'pool', label: 'Address pool FIRST-LAST (optional)' }, { name: 'device', label: 'Host device (e.g. br-ex)' }, { name: 'host_gateway', label: 'Lives on each host (host gateway)', type: 'checkbox' }],
  toBody: (v) => ({ metadata: meta(v), spec: { cidr: str(v, 'cidr'), gateway: opt(v, 'gateway'), pool: opt(v, 'pool'), device: opt(v, 'device'), host_gateway: Boolean(v.host_gateway) } }),
};

/** Objects of another kind related to this one (e.g. a VPC's subnets). */
export function Related(props: { kind: Plural; title: string; filter: (o: AnyObj) => boolean; route: string }) {
  const objs = usePoll((sig) => api.listAll(props.kind, {}, sig), [props.kind], 5000);
  const items = ((objs.data ?? []) as unknown as AnyObj[]).filter(props.filter);
  return (
    <div class="card">
      <h2>{props.title}</h2>
      <ErrorBox error={objs.error} />
      {!items.length && <p class="muted">None.</p>}
      <ul class="plain">
        {items.map((o) => (
          <li><Link to={`${props.route}/${o.metadata.id}`}><Trunc text={o.metadata.name} /></Link></li>
        ))}
      </ul>
    </div>
  );
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const DEFS: KindDef<any>[] = [
  volumes, snapshots, snapshotPolicies, buckets, vpcs, subnets, securityGroups, nics, eips, natGateways, vips, routeTables,
  loadBalancers, placementGroups, apiKeys, s3Keys, alarms, hosts, projects, users, flavors, externalNetworks,
];
export function defByRoute(route: string) {
  return DEFS.find((d) => d.route === route);
}
