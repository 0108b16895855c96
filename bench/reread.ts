/**
 * npx tsx bench/reread.ts [--passes 3] FILE...
 *
 * Reads the files one after the other, 4 MiB per read into one buffer (as bench:data's limit reads), in
 * --passes passes, the page cache dropped before each (needs root), and prints MB/s and this process's system
 * CPU-s per GB per pass. It shows what the read limit of bench:data depends on besides the disk: on this VM
 * the first pass over files not read or written for a while is several times slower than the next passes,
 * although the guest's cache is dropped each time (the host caches the virtual disk's blocks).
 */
import { writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { readFilesPlainly } from './util.ts';

const { values: args, positionals: files } = parseArgs({ options: { passes: { type: 'string', default: '3' } }, allowPositionals: true });
if (files.length === 0) {
  console.error('usage: npx tsx bench/reread.ts [--passes 3] FILE...');
  process.exit(2);
}
const blockBytes = 4 * 1024 * 1024;
for (let pass = 1; pass <= Number(args.passes); pass++) {
  await writeFile('/proc/sys/vm/drop_caches', '3');
  const c0 = process.cpuUsage();
  const { bytes, seconds } = await readFilesPlainly(files, blockBytes);
  const systemS = process.cpuUsage(c0).system / 1e6;
  console.log(`pass ${pass}: ${(bytes / 1e6).toFixed(0)} MB in ${seconds.toFixed(2)} s, ${(bytes / 1e6 / seconds).toFixed(0)} MB/s, system ${(systemS / (bytes / 1e9)).toFixed(2)} CPU-s per GB`);
}
