// Images: the list, upload with progress, and the detail page.
import { useState } from 'preact/hooks';
import { api, upload, type Obj } from '../api';
import { Dialog, ErrorBox, Link, Phase, Spinner, Trunc, ago, bytes, isAdmin, useAction, usePoll, useSession, useTitle, when } from '../lib';
import { ResourceDetail, Table, type Column, type KindDef } from '../resource';

type Image = Obj<'images'>;

const columns: Column<Image>[] = [
  { label: 'Name', get: (o) => <Trunc text={o.metadata.name} />, text: (o) => o.metadata.name, cls: 'name' },
  { label: 'State', get: (o) => <Phase phase={o.status.phase || 'Pending'} />, text: (o) => o.status.phase ?? '' },
  { label: 'OS', get: (o) => <Trunc text={o.spec.os || '—'} />, text: (o) => o.spec.os ?? '' },
  { label: 'Size', get: (o) => bytes(o.status.size_bytes) },
  { label: 'Visibility', get: (o) => (o.spec.public ? 'public' : 'project'), text: (o) => (o.spec.public ? 'public' : 'project') },
  { label: 'Created', get: (o) => <span title={when(o.metadata.created)}>{ago(o.metadata.created)}</span> },
];

export function Images() {
  useTitle('Images');
  const imgs = usePoll((sig) => api.listAll('images', {}, sig), [], 3000);
  const [uploading, setUploading] = useState(false);
  return (
    <section data-testid="page-images">
      <header class="page-head">
        <h1>Images</h1>
        <button type="button" class="primary" data-testid="upload-image" onClick={() => setUploading(true)}>Upload image</button>
      </header>
      <ErrorBox error={imgs.error} />
      <Table<Image> items={imgs.data ?? []} loading={imgs.loading} columns={columns} link={(o) => `/images/${o.metadata.id}`} testid="list-images" empty="No images yet." />
      {uploading && <UploadDialog onClose={() => setUploading(false)} onChange={imgs.reload} />}
    </section>
  );
}

function UploadDialog({ onClose, onChange }: { onClose: () => void; onChange: () => void }) {
  const s = useSession();
  const [name, setName] = useState('');
  const [os, setOs] = useState('');
  const [pub, setPub] = useState(false);
  const [file, setFile] = useState<File | null>(null);
  const [fraction, setFraction] = useState<number | null>(null);
  const [phase, setPhase] = useState<string | null>(null);
  const [abort, setAbort] = useState<(() => void) | null>(null);
  const act = useAction();
  const done = phase === 'Active';
  return (
    <Dialog title="Upload image" onClose={() => { abort?.(); onClose(); }} testid="upload-dialog">
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          if (!file) return;
          let id = '';
          const ok = await act.run(async () => {
            const img = await api.create('images', { metadata: { name: name.trim() }, spec: { os: os.trim(), public: pub } });
            id = img.metadata.id;
            onChange();
            setFraction(0);
            const up = upload(`/v1/images/${encodeURIComponent(id)}/data?part=disk`, file, (f) => setFraction(f));
            setAbort(() => up.abort);
            try {
              await up.done;
            } catch (err) {
              // Leave nothing half-made (as the CLI does).
              await api.remove('images', id).catch(() => undefined);
              onChange();
              throw err;
            } finally {
              setAbort(null);
            }
            // Conversion may go on after the upload; follow the image until it settles.
            for (let i = 0; i < 600; i++) {
              const cur = await api.get('images', id);
              setPhase(cur.status.phase || 'Pending');
              if (cur.status.phase === 'Active') break;
              if (cur.status.phase === 'Failed') throw new Error(`The image failed: ${cur.status.message ?? ''}`);
              await new Promise((r) => setTimeout(r, 1000));
            }
            onChange();
          });
          if (!ok) setFraction(null);
        }}
      >
        <div class="field">
          <label for="img-name">Name</label>
          <input id="img-name" required value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} data-testid="field-name" disabled={act.busy || done} />
        </div>
        <div class="field">
          <label for="img-os">Operating system (optional)</label>
          <input id="img-os" value={os} onInput={(e) => setOs((e.target as HTMLInputElement).value)} data-testid="field-os" disabled={act.busy || done} />
        </div>
        <div class="field">
          <label for="img-file">Disk file (raw or qcow2)</label>
          <input id="img-file" type="file" required onChange={(e) => {
            const f = (e.target as HTMLInputElement).files?.[0] ?? null;
            setFile(f);
            if (f && !name) setName(f.name.replace(/\.(raw|img|qcow2)$/i, '').replace(/[^a-zA-Z0-9._-]/g, '-').replace(/^[^a-zA-Z0-9]+/, '').slice(0, 63));
          }} data-testid="field-file" disabled={act.busy || done} />
          {file && <small>{bytes(file.size)}</small>}
        </div>
        {isAdmin(s) && (
          <div class="field check">
            <input id="img-public" type="checkbox" checked={pub} onChange={(e) => setPub((e.target as HTMLInputElement).checked)} disabled={act.busy || done} />
            <label for="img-public">Public (every project may use it)</label>
          </div>
        )}
        {fraction !== null && (
          <div class="progress-wrap">
            <progress max={100} value={Math.round(fraction * 100)} data-testid="upload-progress" aria-label="Upload progress" />
            <span data-testid="upload-percent">{Math.round(fraction * 100)}%</span>
            {fraction >= 1 && phase !== 'Active' && <Spinner label={`Processing the image${phase ? ` (${phase})` : ''}…`} />}
            {done && <span class="ok" data-testid="upload-done">The image is Active.</span>}
          </div>
        )}
        <ErrorBox error={act.error} testid="form-error" />
        <div class="buttons">
          {!done && act.busy && abort && <button type="button" onClick={() => abort()}>Cancel upload</button>}
          {!done && !act.busy && <button type="button" onClick={onClose}>Cancel</button>}
          {done ? (
            <button type="button" class="primary" onClick={onClose} data-testid="upload-close">Done</button>
          ) : (
            <button type="submit" class="primary" disabled={act.busy || !file} data-testid="submit">{act.busy ? 'Uploading…' : 'Upload'}</button>
          )}
        </div>
      </form>
    </Dialog>
  );
}

const imageDef: KindDef<'images'> = {
  kind: 'images', title: 'Images', singular: 'Image', route: '/images', columns,
  actions: [
    { label: 'Make public', show: (o, admin) => admin && !o.spec.public, run: (o) => api.updateSpec('images', o.metadata.id, (s) => { s.public = true; }) },
    { label: 'Make private', show: (o, admin) => admin && Boolean(o.spec.public), run: (o) => api.updateSpec('images', o.metadata.id, (s) => { s.public = false; }) },
  ],
};
export function ImageDetail({ id }: { id: string }) {
  return <ResourceDetail def={imageDef} id={id} />;
}
void Link;
