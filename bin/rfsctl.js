#!/usr/bin/env node
// The `rfsctl` command (package.json "bin"): rfs runs its TypeScript sources directly, so this launcher
// registers tsx's ESM loader in this process and imports the CLI's entry file.
import { register } from 'tsx/esm/api';

register();
await import('../src/cli/rfsctl.ts');
