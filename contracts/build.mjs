// Builds artifacts/: the contracts the Spells dev chain deploys, as ABI and
// creation bytecode, so building Spells itself needs no Solidity compiler.
//
//   cd contracts && npm ci && npm run build
//
// src/*.sol is compiled with the solc npm package (a bundled compiler, no
// network) against OpenZeppelin Contracts; the MetaMask Delegation Framework
// is taken as published in @metamask/delegation-abis (its audited bytecode,
// not recompiled). Chainlink's test aggregator (MockV3Aggregator, MIT, the
// dev chain's price feed) is compiled from the @chainlink/contracts package,
// fetched with `npm pack` (its own dependencies do not install from the
// registry alone, so it is not a devDependency).
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";
import os from "node:os";

const require = createRequire(import.meta.url);
const solc = require("solc");
const here = path.dirname(new URL(import.meta.url).pathname);
const out = path.join(here, "artifacts");
fs.mkdirSync(out, { recursive: true });

function write(name, artifact) {
  fs.writeFileSync(path.join(out, name + ".json"), JSON.stringify(artifact, null, 1) + "\n");
}

// Our own contracts.
const sources = {};
for (const f of fs.readdirSync(path.join(here, "src")).filter((f) => f.endsWith(".sol")).sort()) {
  sources[f] = { content: fs.readFileSync(path.join(here, "src", f), "utf8") };
}

// Chainlink's test aggregator, from its published package.
const chainlink = { name: "@chainlink/contracts", version: "1.5.0", file: "src/v0.8/shared/mocks/MockV3Aggregator.sol" };
const packDir = fs.mkdtempSync(path.join(os.tmpdir(), "spells-chainlink-"));
execFileSync("npm", ["pack", `${chainlink.name}@${chainlink.version}`, "--pack-destination", packDir, "--silent"], { stdio: ["ignore", "ignore", "inherit"] });
const tgz = fs.readdirSync(packDir).find((f) => f.endsWith(".tgz"));
execFileSync("tar", ["xzf", path.join(packDir, tgz), "-C", packDir]);
const chainlinkRoot = path.join(packDir, "package");
const chainlinkUnit = `${chainlink.name}/${chainlink.file}`;
sources[chainlinkUnit] = { content: fs.readFileSync(path.join(chainlinkRoot, chainlink.file), "utf8") };
const input = {
  language: "Solidity",
  sources,
  settings: {
    evmVersion: "prague",
    optimizer: { enabled: true, runs: 200 },
    outputSelection: { "*": { "*": ["abi", "evm.bytecode.object"] } },
  },
};
function findImports(p) {
  if (p.startsWith(chainlink.name + "/")) {
    try {
      return { contents: fs.readFileSync(path.join(chainlinkRoot, p.slice(chainlink.name.length + 1)), "utf8") };
    } catch {
      return { error: "not found: " + p };
    }
  }
  try {
    return { contents: fs.readFileSync(require.resolve(p), "utf8") };
  } catch {
    return { error: "not found: " + p };
  }
}
const result = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
const errors = (result.errors || []).filter((e) => e.severity === "error");
for (const e of result.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
const compiler = "solc " + solc.version();
for (const file of Object.keys(sources)) {
  for (const [name, c] of Object.entries(result.contracts[file])) {
    if (!c.evm.bytecode.object) continue; // an interface
    const source = file === chainlinkUnit ? `${chainlink.name}@${chainlink.version} ${chainlink.file}` : "contracts/src/" + file;
    write(name, { contractName: name, source, compiler, license: "MIT", abi: c.abi, bytecode: "0x" + c.evm.bytecode.object });
  }
}
fs.rmSync(packDir, { recursive: true, force: true });

// The delegation framework, as published.
const abis = require("@metamask/delegation-abis");
const bytecode = require("@metamask/delegation-abis/bytecode");
const pkg = require("@metamask/delegation-abis/package.json");
const framework = [
  "DelegationManager",
  "EntryPoint",
  "EIP7702StatelessDeleGator",
  "AllowedTargetsEnforcer",
  "AllowedMethodsEnforcer",
  "ValueLteEnforcer",
  "LimitedCallsEnforcer",
  "TimestampEnforcer",
  "ERC20PeriodTransferEnforcer",
  "NativeTokenPeriodTransferEnforcer",
  "ExactExecutionBatchEnforcer",
];
for (const name of framework) {
  write(name, { contractName: name, source: pkg.name + "@" + pkg.version, license: pkg.license, abi: abis[name], bytecode: bytecode[name] });
}
console.log("wrote", fs.readdirSync(out).length, "artifacts with", compiler);
