/** The compression attribute: set by Mkdir/Create/CreateMany/Setattr, inherited from the parent, in Stat. */
import t from 'tap';
import { decodeCommand, encodeCommand } from '../../src/fsm/commands.ts';
import type { Inode } from '../../src/fsm/records.ts';
import { decodeInode, encodeInode } from '../../src/fsm/records.ts';
import { Packr } from 'msgpackr';
import { fsmTest } from './harness.ts';

fsmTest(t, 'the root has no compression; a new file or directory inherits its parent\'s', async (t, h) => {
  t.equal((await h.stat('/')).compression, 'none');
  await h.ok({ type: 'create', path: '/plain' });
  t.equal((await h.stat('/plain')).compression, 'none');
  await h.ok({ type: 'mkdir', path: '/z', compression: 'lz4' });
  t.equal((await h.stat('/z')).compression, 'lz4', 'mkdir sets it');
  await h.ok({ type: 'create', path: '/z/f' });
  t.equal((await h.stat('/z/f')).compression, 'lz4', 'a file in an lz4 directory is lz4');
  await h.ok({ type: 'create', path: '/z/g', compression: 'none' });
  t.equal((await h.stat('/z/g')).compression, 'none', 'an explicit none overrides the directory');
  await h.ok({ type: 'mkdir', path: '/z/sub/deeper', parents: true });
  t.equal((await h.stat('/z/sub')).compression, 'lz4', 'mkdir -p: each new directory inherits');
  await h.ok({ type: 'create', path: '/z/sub/deeper/h' });
  t.equal((await h.stat('/z/sub/deeper/h')).compression, 'lz4', 'inherited through every level');
  await h.ok({ type: 'create', path: '/lz', compression: 'lz4' });
  t.equal((await h.stat('/lz')).compression, 'lz4', 'an explicit lz4 in a plain directory');
  t.same(await h.invariants(), []);
});

fsmTest(t, 'createMany: the directory\'s compression or the command\'s', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/z', compression: 'lz4' });
  await h.ok({ type: 'createMany', dir: '/z', names: ['a', 'b'] });
  await h.ok({ type: 'createMany', dir: '/z', names: ['c'], compression: 'none' });
  await h.ok({ type: 'createMany', dir: '/', names: ['d'], compression: 'lz4' });
  t.same(
    await Promise.all(['/z/a', '/z/b', '/z/c', '/d'].map(async (p) => (await h.stat(p)).compression)),
    ['lz4', 'lz4', 'none', 'lz4'],
  );
});

fsmTest(t, 'a truncating create keeps the replaced file\'s compression unless given', async (t, h) => {
  await h.ok({ type: 'create', path: '/f', compression: 'lz4' });
  await h.ok({ type: 'create', path: '/f', exclusive: false });
  t.equal((await h.stat('/f')).compression, 'lz4');
  await h.ok({ type: 'create', path: '/f', exclusive: false, compression: 'none' });
  t.equal((await h.stat('/f')).compression, 'none');
});

fsmTest(t, 'setattr changes the default of a directory for what is created later, and a file\'s', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/z' });
  await h.ok({ type: 'create', path: '/z/before' });
  await h.ok({ type: 'setattr', path: '/z', compression: 'lz4' });
  t.equal((await h.stat('/z')).compression, 'lz4');
  t.equal((await h.stat('/z/before')).compression, 'none', 'existing files keep theirs');
  await h.ok({ type: 'create', path: '/z/after' });
  t.equal((await h.stat('/z/after')).compression, 'lz4');
  await h.ok({ type: 'setattr', path: '/z/after', compression: 'none' });
  t.equal((await h.stat('/z/after')).compression, 'none');
  await h.ok({ type: 'setattr', path: '/z', mode: 0o700 });
  t.equal((await h.stat('/z')).compression, 'lz4', 'a setattr without it leaves it');
});

fsmTest(t, 'anything but none or lz4 is EINVAL and changes nothing', async (t, h) => {
  t.equal(await h.code({ type: 'mkdir', path: '/m', compression: 'zstd' }), 'EINVAL');
  t.equal(await h.code({ type: 'create', path: '/f', compression: 'LZ4' }), 'EINVAL');
  t.equal(await h.code({ type: 'createMany', dir: '/', names: ['a'], compression: '' }), 'EINVAL');
  await h.ok({ type: 'create', path: '/g' });
  t.equal(await h.code({ type: 'setattr', path: '/g', compression: 'gzip' }), 'EINVAL');
  t.same(await h.names('/'), ['g']);
  t.equal((await h.stat('/g')).compression, 'none');
});

fsmTest(t, 'compression survives a reopen of the state machine', async (t, h) => {
  await h.ok({ type: 'mkdir', path: '/z', compression: 'lz4' });
  await h.ok({ type: 'create', path: '/z/f' });
  await h.reopen();
  t.equal((await h.stat('/z')).compression, 'lz4');
  t.equal((await h.stat('/z/f')).compression, 'lz4');
});

void t.test('records: a plain inode keeps the 15-field encoding; lz4 adds a 16th; commands round-trip', (t) => {
  const inode: Inode = {
    id: 9,
    type: 'file',
    parent: 1,
    name: 'f',
    mode: 0o644,
    owner: '',
    mtimeMs: 1,
    ctimeMs: 1,
    generation: 3,
    replication: 3,
    chunkSizeBytes: 1 << 20,
    childCount: 0,
    lengthBytes: 0,
    chunkCount: 0,
    unsealedChunks: 0,
    complete: true,
  };
  const packr = new Packr({ useRecords: false });
  const plainBytes = encodeInode(inode);
  t.equal((packr.unpack(plainBytes) as unknown[]).length, 15);
  t.same(decodeInode(9, plainBytes), inode);
  t.notOk('compression' in decodeInode(9, plainBytes));
  const lz4 = { ...inode, compression: 'lz4' as const };
  const lz4Bytes = encodeInode(lz4);
  t.equal((packr.unpack(lz4Bytes) as unknown[]).length, 16);
  t.same(decodeInode(9, lz4Bytes), lz4);
  t.throws(() => decodeInode(9, packr.pack([...(packr.unpack(plainBytes) as unknown[]), 7])), 'an unknown compression code is corrupt');
  const command = { nowMs: 5, op: { type: 'create' as const, path: '/f', compression: 'lz4' } };
  t.same(decodeCommand(encodeCommand(command)), command);
  const plain = { nowMs: 5, op: { type: 'create' as const, path: '/f' } };
  t.same(decodeCommand(encodeCommand(plain)), plain);
  t.end();
});
