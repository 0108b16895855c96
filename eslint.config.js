// @ts-check
import tseslint from 'typescript-eslint';

const ioModules = ['fs', 'fs/promises', 'net', 'http', 'http2', 'https', 'dgram', 'child_process',
  'worker_threads', 'os', 'timers', 'timers/promises', 'cluster', 'crypto', 'perf_hooks', 'readline', 'tls'];
const forbiddenImports = [
  ...ioModules.flatMap((m) => [m, `node:${m}`]),
  'rocksdb', '@grpc/grpc-js', 'pino', 'prom-client', 'undici',
];

export default tseslint.config(
  { ignores: ['node_modules/**', '.tap/**', 'eslint.config.js'] },
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['bin/*.js'] }, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    // The deterministic core: time, randomness, timers and I/O arrive only through injected interfaces.
    files: ['src/raft/**/*.ts', 'src/fsm/**/*.ts', 'src/placement/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { paths: forbiddenImports.map((name) => ({ name, message: 'src/raft, src/fsm and src/placement are pure: inject I/O instead.' })), patterns: ['**/rpc/**', '**/metadata/**', '**/storage/rocksdb*'] }],
      'no-restricted-globals': ['error', 'setTimeout', 'setInterval', 'setImmediate', 'clearTimeout', 'clearInterval', 'queueMicrotask', 'performance', 'process', 'require'],
      'no-restricted-properties': ['error',
        { object: 'Date', property: 'now', message: 'Use the injected clock.' },
        { object: 'Math', property: 'random', message: 'Use the injected random source.' },
      ],
      'no-restricted-syntax': ['error', { selector: "NewExpression[callee.name='Date']", message: 'Use the injected clock.' }],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
    },
  },
);
