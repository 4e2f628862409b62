"""Following the configuration from start_search: how far the whole ``SearchConfig`` travels.

A static walk of the source (``ast``: nothing is imported or run) from
``optnas.studies.search.start_search``, whose parameter ``config`` is the configuration.

Method:

* A name is *bound to the configuration* when it is the parameter the configuration was passed
  to, a local name assigned from a bound name (``config = self.config``, tuples included),
  ``self`` inside a ``SearchConfig`` method, or an attribute ``self.<a>`` of a class one of
  whose methods did ``self.<a> = <bound name>`` (an object that keeps the configuration).
* A *step* is a call edge (caller function -> callee function, counted once however many call
  sites) along which the configuration flows:

  - *handed on*: a bound name passed as an argument (positional, keyword, or bound by
    ``functools.partial``) to an optnas function, method or constructor;
  - *asked*: a bound name that is the receiver of a ``SearchConfig`` method or property called
    from outside ``optnas.config`` (``config.make_space()``, ``config.objectives``: the callee
    gets the whole configuration as ``self``). The configuration's methods calling one another
    are no step (it has not left its module), but the walk follows them: a method that hands
    ``self`` on (``make_space`` to a space) is a step.

  Reading a plain field (``config.seed``) is no step.
* Callees are resolved through each module's imports (function-level ones included, re-exports
  followed); ``self.m(...)`` through the class and its optnas bases; a call on any other
  receiver (``self.space_class.from_options(self)``) to every optnas class defining that method
  (the space classes behind the registry), which is what such dynamic dispatch can reach.
  A constructor is its class's ``__init__``, or the class itself for a dataclass.
* The walk enters every callee of a step with the receiving parameter bound, and every method of
  a class that keeps the configuration; it does not follow return values.
* *Functions holding it*: every function entered, ``start_search`` included; *modules visited*:
  their modules.
* A *climb back up* is a step from a module to one of a higher layer in the README's Layout
  table, or a function of a layer below ``optnas.config``'s that reads a field of the
  configuration (one per function): a lower layer reaching back up into the configuration,
  e.g. a space reading ``options.min_resolution``.

Usage: ``python benchmarks/config_walk.py [ROOT] [--edges]``; ROOT is a checkout holding
``optnas/`` and ``README.md`` [default: this one]; ``--edges`` lists every step and climb.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

START = ("optnas.studies.search", "start_search")
CONFIG_CLASS = ("optnas.config", "SearchConfig")


@dataclass
class Function:
    """One function or method: where it is, its parameters, its body."""

    module: str
    qualname: str
    node: ast.FunctionDef | None
    cls: str | None = None
    kind: str = "function"  # function, method, classmethod, staticmethod, property

    @property
    def key(self) -> str:
        return f"{self.module}:{self.qualname}"

    def params(self) -> list[str]:
        if self.node is None:
            return []
        args = self.node.args
        names = [a.arg for a in args.posonlyargs + args.args]
        return names[1:] if self.kind in ("method", "classmethod", "property") else names

    def keyword_params(self) -> set[str]:
        if self.node is None:
            return set()
        args = self.node.args
        return {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}


@dataclass
class Klass:
    module: str
    name: str
    bases: list[ast.expr]
    methods: dict[str, Function] = field(default_factory=dict)
    is_dataclass: bool = False


class Tree:
    """The optnas package of one checkout: modules, their names, classes and functions."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules: dict[str, ast.Module] = {}
        for path in sorted((root / "optnas").rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            self.modules[".".join(parts)] = ast.parse(path.read_text())
        self.packages = {name for name in self.modules
                         if (root / Path(*name.split(".")) / "__init__.py").is_file()}
        self.functions: dict[tuple[str, str], Function] = {}
        self.classes: dict[tuple[str, str], Klass] = {}
        self.imports: dict[str, dict[str, tuple[str, str | None]]] = {}
        for name, tree in self.modules.items():
            self._index(name, tree)
        self.layers = _layers(root / "README.md")

    def _index(self, module: str, tree: ast.Module) -> None:
        names: dict[str, tuple[str, str | None]] = {}
        package = module if module in self.packages else module.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                if not base.startswith("optnas"):
                    continue
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    names[alias.asname or alias.name] = (target, None) if target in self.modules else (base, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("optnas") and alias.asname:
                        names[alias.asname] = (alias.name, None)
        self.imports[module] = names
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.functions[module, node.name] = Function(module, node.name, node)
            elif isinstance(node, ast.ClassDef):
                klass = Klass(module, node.name, node.bases, is_dataclass=any(
                    "dataclass" in ast.unparse(d) for d in node.decorator_list))
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        decorators = {ast.unparse(d) for d in item.decorator_list}
                        kind = ("property" if "property" in decorators or any(d.endswith(".setter") for d in decorators)
                                else "classmethod" if "classmethod" in decorators
                                else "staticmethod" if "staticmethod" in decorators else "method")
                        klass.methods[item.name] = Function(module, f"{node.name}.{item.name}", item, node.name, kind)
                self.classes[module, node.name] = klass

    def resolve(self, module: str, name: str, depth: int = 0) -> tuple[str, tuple[str, str] | str] | None:
        """What ``name`` means in ``module``: ("function"|"class", (module, name)) or ("module", module)."""
        if depth > 10:
            return None
        if (module, name) in self.functions:
            return "function", (module, name)
        if (module, name) in self.classes:
            return "class", (module, name)
        target = self.imports.get(module, {}).get(name)
        if target is None:
            return None
        where, what = target
        if what is None:
            return "module", where
        if where in self.modules:
            return self.resolve(where, what, depth + 1)
        return None

    def resolve_expr(self, module: str, expr: ast.expr) -> tuple[str, object] | None:
        if isinstance(expr, ast.Name):
            return self.resolve(module, expr.id)
        if isinstance(expr, ast.Attribute):
            base = self.resolve_expr(module, expr.value)
            if base is None:
                return None
            kind, what = base
            if kind == "module":
                return self.resolve(what, expr.attr) or (
                    ("module", f"{what}.{expr.attr}") if f"{what}.{expr.attr}" in self.modules else None)
            if kind == "class":
                method = self.method(what, expr.attr)
                return ("function", method) if method is not None else None
        return None

    def mro(self, klass: tuple[str, str]) -> list[Klass]:
        found, queue = [], [klass]
        while queue:
            key = queue.pop(0)
            if key not in self.classes or self.classes[key] in found:
                continue
            found.append(self.classes[key])
            for base in self.classes[key].bases:
                resolved = self.resolve_expr(key[0], base)
                if resolved and resolved[0] == "class":
                    queue.append(resolved[1])
        return found

    def method(self, klass: tuple[str, str], name: str) -> Function | None:
        for cls in self.mro(klass):
            if name in cls.methods:
                return cls.methods[name]
        return None

    def layer(self, module: str) -> int:
        matches = [(len(prefix), index) for index, prefixes in enumerate(self.layers) for prefix in prefixes
                   if module == prefix or module.startswith(prefix + ".")]
        return max(matches)[1] + 1 if matches else 0


def _layers(readme: Path) -> list[list[str]]:
    section = readme.read_text().split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|") for line in section.splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    return [re.findall(r"`([\w.]+)`", row[2]) for row in rows]


class Walk:
    """The walk itself: functions entered with their bound names, steps taken, fields read."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.config_methods = set(tree.classes[CONFIG_CLASS].methods)
        self.bound: dict[str, set[str]] = {}  # function key -> names bound to the configuration
        self.kept: set[tuple[tuple[str, str], str]] = set()  # (class, attribute) keeping it
        self.entered: dict[str, Function] = {}
        self.steps: dict[tuple[str, str], str] = {}  # (caller, callee) -> "handed on" or "asked"
        self.readers: set[str] = set()  # functions that read a field of the configuration

    def run(self) -> None:
        self._enter(self.tree.functions[START], {"config"})
        state = None
        while state != (len(self.steps), len(self.kept), sum(map(len, self.bound.values())), len(self.entered)):
            state = (len(self.steps), len(self.kept), sum(map(len, self.bound.values())), len(self.entered))
            for function in list(self.entered.values()):
                self._scan(function)

    def _enter(self, function: Function, names: set[str]) -> None:
        self.entered.setdefault(function.key, function)
        self.bound.setdefault(function.key, set()).update(names)

    def _is_bound(self, function: Function, expr: ast.expr, names: set[str]) -> bool:
        if isinstance(expr, ast.Name):
            return expr.id in names
        if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
            if function.cls is None:
                return False
            return any(((k.module, k.name), expr.attr) in self.kept
                       for k in self.tree.mro((function.module, function.cls)))
        return False

    def _bind_assignments(self, function: Function, names: set[str]) -> None:
        """Names and ``self`` attributes assigned from bound names, to a fixed point."""
        grown = True
        while grown:
            grown = False
            for node in ast.walk(function.node):
                if not isinstance(node, ast.Assign):
                    continue
                for target in node.targets:
                    pairs = [(target, node.value)]
                    if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                        pairs = list(zip(target.elts, node.value.elts))
                    for left, right in pairs:
                        if self._is_bound(function, right, names):
                            grown |= self._bind(function, left, names)

    def _bind(self, function: Function, target: ast.expr, names: set[str]) -> bool:
        if isinstance(target, ast.Name) and target.id not in names:
            names.add(target.id)
            return True
        if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self"
                and function.cls is not None):
            klass = (function.module, function.cls)
            if (klass, target.attr) not in self.kept:
                self.kept.add((klass, target.attr))
                for method in self.tree.classes[klass].methods.values():
                    self._enter(method, set())
                return True
        return False

    def _scan(self, function: Function) -> None:
        if function.node is None:
            return
        names = self.bound[function.key]
        self._bind_assignments(function, names)
        for node in ast.walk(function.node):
            if isinstance(node, ast.Call):
                self._call(function, node, names)
            if isinstance(node, ast.Attribute) and self._is_bound(function, node.value, names):
                if node.attr in self.config_methods:
                    # A SearchConfig method or property: it gets the configuration as self.
                    method = self.tree.classes[CONFIG_CLASS].methods[node.attr]
                    if function.module == CONFIG_CLASS[0]:
                        self._enter(method, {"self"})
                    else:
                        self._step(function, method, {"self"}, "asked")
                elif not node.attr.startswith("_"):
                    self.readers.add(function.key)

    def _step(self, caller: Function, callee: Function, names: set[str], kind: str) -> None:
        self.steps.setdefault((caller.key, callee.key), kind)
        self._enter(callee, names)

    def _call(self, function: Function, call: ast.Call, names: set[str]) -> None:
        func, args = call.func, list(call.args)
        if ast.unparse(func) in ("functools.partial", "partial") and args:
            func, args = args[0], args[1:]
        positions = [i for i, a in enumerate(args) if self._is_bound(function, a, names)]
        keywords = [k.arg for k in call.keywords if k.arg and self._is_bound(function, k.value, names)]
        if not positions and not keywords:
            return
        for callee in self._callees(function, func):
            params = callee.params()
            bound = {params[i] for i in positions if i < len(params)} | (set(keywords) & callee.keyword_params())
            if callee.node is None or bound:
                self._step(function, callee, bound, "handed on")

    def _callees(self, function: Function, func: ast.expr) -> list[Function]:
        tree = self.tree
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in ("self", "cls"):
            method = tree.method((function.module, function.cls), func.attr) if function.cls else None
            if method is not None:
                return [method]
        resolved = tree.resolve_expr(function.module, func)
        if resolved is not None:
            kind, what = resolved
            if kind == "function":
                return [what if isinstance(what, Function) else tree.functions[what]]
            if kind == "class":
                init = tree.method(what, "__init__")
                if init is not None:
                    return [init]
                klass = tree.classes[what]
                return [Function(klass.module, f"{klass.name}()", None, klass.name, "constructor")]
            return []
        if isinstance(func, ast.Attribute):
            # Dynamic dispatch: every optnas class that defines the method.
            return [cls.methods[func.attr] for cls in tree.classes.values() if func.attr in cls.methods]
        return []

    def climbs(self) -> list[tuple[str, str]]:
        """Steps to a higher layer, and functions below the configuration's layer reading its fields."""
        layer = self.tree.layer
        up = [(caller, callee) for caller, callee in self.steps
              if layer(callee.split(":")[0]) > layer(caller.split(":")[0])]
        below = [(reader, f"{CONFIG_CLASS[0]} (fields)") for reader in self.readers
                 if layer(reader.split(":")[0]) < layer(CONFIG_CLASS[0])]
        return sorted(up + below)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent))
    parser.add_argument("--edges", action="store_true", help="list every step and climb")
    args = parser.parse_args(argv)
    walk = Walk(Tree(Path(args.root)))
    walk.run()
    climbs = walk.climbs()
    if args.edges:
        for (caller, callee), kind in sorted(walk.steps.items()):
            print(f"{kind:9s}  {caller} -> {callee}")
        for caller, callee in climbs:
            print(f"climb      {caller} -> {callee}")
    handed = sum(kind == "handed on" for kind in walk.steps.values())
    modules = {function.module for function in walk.entered.values()}
    print(f"{args.root}: {len(walk.steps)} steps ({handed} handed on, {len(walk.steps) - handed} asked), "
          f"{len(walk.entered)} functions holding it, {len(modules)} modules, {len(climbs)} climbs back up")
    return 0


if __name__ == "__main__":
    sys.exit(main())
