"""Recovering closed forms for a hybrid model's networks: sparse regression of every network
call on sampled states, the parameters whose terms the regression absorbs, the recovered model
with a learnable coefficient per term, and the truth's terms when the data are synthetic."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import sympy
import torch
from sympy.core.function import AppliedUndef

from ._equations import ParsedSystem, parse_expression
from ._model import HybridModel
from ._result import Recovery
from ._spec import DiscoverySpec, Observations

__all__ = ["describe", "prune", "read_back", "recovered_model", "regress_networks"]


@dataclass
class _Absorbable:
    """A term ``number · parameter · monomial`` of the equation of a single network."""

    parameter: str
    number: float
    monomial: sympy.Expr


def _call_atom(expr: sympy.Expr, call: str) -> sympy.Expr:
    return next(c for c in expr.atoms(AppliedUndef) if c.func.__name__ == call)


def _split_equation(parsed: ParsedSystem, state: str, call: str, variables: list[str], degree):
    """``(c, absorbable)`` where the equation of ``state`` is ``c·call(...) + Σ absorbable +
    rest``; ``c`` is None when the network's term is not a number times the call."""
    expr = sympy.expand(parsed.equations[state])
    c = sympy.simplify(expr.coeff(_call_atom(expr, call)))
    if c.free_symbols or c == 0:
        return None, []
    absorbable = []
    variable_symbols = {parsed.symbols[v] for v in variables}
    for term in sympy.Add.make_args(expr):
        if term.has(AppliedUndef):
            continue
        params = [p for p in parsed.spec.parameters if term.has(parsed.symbols[p])]
        if len(params) != 1:
            continue
        p = parsed.symbols[params[0]]
        rest = sympy.simplify(term / p)
        if rest.has(p):
            continue
        number, monomial = rest.as_coeff_Mul()
        if not (monomial.free_symbols <= variable_symbols) or not monomial.is_polynomial():
            continue
        poly = (
            sympy.Poly(monomial, *sorted(variable_symbols, key=str))
            if monomial.free_symbols
            else None
        )
        if poly is not None and (len(poly.terms()) != 1 or poly.total_degree() > degree):
            continue
        absorbable.append(_Absorbable(params[0], float(number), monomial))
    return float(c), absorbable


def _truth_terms(parsed: ParsedSystem, obs: Observations, state: str, variables, c, absorbable):
    """The true unknown term of a network call (as ``{term: coefficient}``) and the true values
    of the absorbed parameters, read off the generating equations; ``(None, {})`` if unknown."""
    from ..discovery import as_terms

    truth = obs.truth
    if truth is None or state not in truth.equations or c is None:
        return None, {}
    try:
        symbols = {**parsed.symbols, **{k: sympy.Symbol(k, real=True) for k in truth.parameters}}
        true_rhs = parse_expression(
            truth.equations[state],
            f"the true equation for `{state}`",
            symbols,
            allow_networks=False,
        ).subs({symbols[k]: float(v) for k, v in truth.parameters.items()})
        constants = {parsed.symbols[k]: float(v) for k, v in parsed.spec.constants.items()}
        hybrid = sympy.expand(parsed.equations[state].subs(constants))
        known = sum(
            (
                t
                for t in sympy.Add.make_args(hybrid)
                if not t.has(AppliedUndef)
                and not any(t.has(parsed.symbols[p]) for p in parsed.spec.parameters)
            ),
            sympy.Integer(0),
        )
        unknown = sympy.expand(true_rhs - known)  # = c·NN + Σ n·p·m, at the truth
        terms = as_terms(unknown, variables)
        true_params = {}
        for a in absorbable:
            key = str(a.monomial) if a.monomial != 1 else "1"
            coefficient = terms.pop(key, 0.0)
            true_params[a.parameter] = coefficient / a.number
        return {k: v / c for k, v in terms.items()}, true_params
    except Exception:  # a truth that does not split like the model: no score, not an error
        return None, {}


def regress_networks(
    model: HybridModel,
    ts: torch.Tensor,
    states: torch.Tensor,
    obs: Observations,
    spec: DiscoverySpec,
    threshold: float,
    inside: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, Recovery], dict[str, float], dict[str, float]]:
    """Sparse regression of every network call of ``model`` on the sampled ``states`` at times
    ``ts`` (only the samples ``inside[call]`` marks, when given: those inside the data's range of
    the call's inputs). A learnable parameter whose term the network could also represent
    (``- theta*y`` beside ``NN2(x, y)``) joins the regression, which sets it.

    Returns:
        ``(recoveries, implied, true_params)``: per call its :class:`Recovery` (before
        refitting), the parameter values the regression implies, and the true parameters when
        the data are synthetic.
    """
    from ..discovery import SparseExpression, polynomial_library, sparse_regression

    parsed = model.parsed
    env = {parsed.spec.time: ts, **dict(zip(model.states, states.unbind(-1)))}
    with torch.no_grad():
        outputs = model.network_outputs(ts, states)
    params = model.parameter_values()
    recoveries, implied, true_params = {}, {}, {}
    for call, (network, _) in parsed.calls.items():
        variables = list(parsed.networks[network])
        owners = parsed.network_equations(call)
        c, absorbable = (None, [])
        if owners:
            c, absorbable = _split_equation(parsed, owners[0], call, variables, spec.degree)
        if len(owners) > 1:  # the network must fit every equation: nothing can be absorbed
            absorbable = []
        scale = 1.0 if c is None else c
        target = scale * outputs[call]
        for a in absorbable:
            target = target + a.number * params[a.parameter] * _monomial(a.monomial, env)
        library = None if spec.library is None else list(spec.library)
        if library is not None:  # the absorbed monomials must be candidates too
            library += [str(a.monomial) for a in absorbable if str(a.monomial) not in library]
        found = sparse_regression(
            {v: env[v] for v in variables},
            target,
            degree=None if library is not None else spec.degree,
            library=library,
            threshold=threshold,
            threshold_mode=spec.threshold_mode,
            weights=_weights(
                inside, call, target, len(library or polynomial_library(variables, spec.degree))
            ),
        )
        terms = dict(found.terms)
        absorbed = {a.parameter: terms.pop(str(a.monomial), 0.0) / a.number for a in absorbable}
        expression = SparseExpression(
            {k: v / scale for k, v in terms.items()}, variables=tuple(variables)
        )
        truth, truth_params = _truth_terms(
            parsed, obs, owners[0] if owners else "", variables, c, absorbable
        )
        true_params.update(truth_params)
        implied.update(absorbed)
        recoveries[call] = Recovery(
            network=call,
            equation=owners[0] if owners else "",
            expression=expression,
            absorbed=absorbed,
            r2=float(found.r2),
            truth=truth,
            factor=c,
            absorbed_terms={a.parameter: (a.number, str(a.monomial)) for a in absorbable},
        )
    return recoveries, implied, true_params


def _weights(inside, call: str, target: torch.Tensor, terms: int) -> torch.Tensor | None:
    """The regression's sample weights: 1 inside the data's range, 0 outside (None: all, also
    when too few samples are inside to fit the library, which the sampling's warning reports)."""
    if inside is None or call not in inside:
        return None
    mask = inside[call].to(target.dtype)
    return mask if int(mask.sum()) >= 3 * terms else None


def describe(recoveries: dict[str, Recovery]) -> str:
    """``"NN1 ≈ -0.4*x*y; NN2 ≈ 0.1*x*y [and theta = 0.4]"``."""
    parts = []
    for network, rec in recoveries.items():
        absorbed = ", ".join(f"{k} = {v:.4g}" for k, v in rec.absorbed.items())
        parts.append(f"{network} ≈ {rec.expression}" + (f" [and {absorbed}]" if absorbed else ""))
    return "; ".join(parts)


def size(recoveries: dict[str, Recovery]) -> int:
    """The number of coefficients a candidate law has (terms and absorbed parameters)."""
    return sum(len(r.expression.terms) + len(r.absorbed) for r in recoveries.values())


def _monomial(monomial: sympy.Expr, env: dict[str, torch.Tensor]) -> torch.Tensor:
    names = sorted(monomial.free_symbols, key=str)
    fn = sympy.lambdify(names, monomial, modules="torch")
    value = fn(*(env[str(s)] for s in names))
    like = next(iter(env.values()))
    return torch.as_tensor(value, dtype=like.dtype).expand(like.shape[-1:] if like.ndim else ())


def recovered_model(
    hybrid: HybridModel, recoveries: dict[str, Recovery], implied: dict[str, float]
) -> tuple[HybridModel, dict[str, list[tuple[str, str]]]]:
    """The hybrid model's equations with every network call replaced by its recovered
    expression, each coefficient a learnable parameter named ``<call>_c<j>``; returns the model
    and, per call, the (parameter, term) pairs."""
    parsed = hybrid.parsed
    spec = parsed.spec
    parameters = {**hybrid.parameter_values(), **implied}
    taken = set(parsed.symbols)
    coefficients: dict[str, list[tuple[str, str]]] = {}
    replacements = {}
    for call, rec in recoveries.items():
        network = parsed.calls[call][0]
        variables = {v: parsed.symbols[v] for v in parsed.networks[network]}
        total = sympy.Integer(0)
        coefficients[call] = []
        stem = re.sub(r"\W", "_", call).strip("_")  # NN1[0] -> NN1_0
        for j, (term, value) in enumerate(rec.expression.terms.items()):
            name = f"{stem}_c{j}"
            while name in taken:
                name += "_"
            taken.add(name)
            parameters[name] = float(value)
            symbol = sympy.Symbol(name, real=True)
            total += symbol * parse_expression(term, f"the recovered term {term!r}", variables)
            coefficients[call].append((name, term))
        replacements[call] = total
    equations = {
        state: sympy.sstr(
            parsed.equations[state].replace(
                lambda e: isinstance(e, AppliedUndef),
                lambda e: replacements[e.func.__name__],
            )
        )
        for state in spec.states
    }
    system = replace(spec, equations=equations, parameters=parameters, networks={})
    return HybridModel(system), coefficients


def read_back(model: HybridModel, recoveries: dict[str, Recovery], coefficients) -> None:
    """Put the refitted coefficients and parameters back into the recoveries."""
    from ..discovery import SparseExpression, compare_terms

    values = model.parameter_values()
    for call, rec in recoveries.items():
        terms = {term: values[name] for name, term in coefficients[call]}
        rec.expression = SparseExpression(terms, variables=rec.expression.variables)
        rec.absorbed = {k: values[k] for k in rec.absorbed}
        if rec.truth is not None:
            rec.max_relative_error = compare_terms(rec.expression, rec.truth).max_relative_error


def prune(
    recoveries: dict[str, Recovery],
    model: HybridModel,
    ts: torch.Tensor,
    states: torch.Tensor,
    inside: dict[str, torch.Tensor],
    spec: DiscoverySpec,
    threshold: float,
) -> dict[str, list[str]]:
    """Drop the terms whose *refitted* coefficients fall below ``threshold`` (read as
    ``spec.threshold_mode`` says, on the same samples as the regression): the last step of
    sequential thresholding, done on the fit to the data instead of on the networks. A term the
    networks' error asked for shrinks when the law is fitted to the data; a real one does not.
    The absorbed parameters stay. Returns, per call, the terms dropped (the recoveries lose them).
    """
    from ..discovery import SparseExpression

    env = {model.parsed.spec.time: ts, **dict(zip(model.states, states.unbind(-1)))}
    dropped = {}
    for call, rec in recoveries.items():
        keep = inside.get(call)
        keep = torch.ones(ts.shape, dtype=torch.bool) if keep is None else keep
        sub = {v: env[v][keep] for v in rec.expression.variables}
        factor = rec.factor if rec.factor else 1.0
        parts = {
            term: factor * value * SparseExpression({term: 1.0}, rec.expression.variables)(sub)
            for term, value in rec.expression.terms.items()
        }
        absorbed = [
            number
            * rec.absorbed[name]
            * SparseExpression({monomial: 1.0}, rec.expression.variables)(sub)
            for name, (number, monomial) in rec.absorbed_terms.items()
            if name in rec.absorbed
        ]
        total = sum([*parts.values(), *absorbed], torch.zeros(int(keep.sum())))
        size = {term: float(abs(factor * value)) for term, value in rec.expression.terms.items()}
        largest = max(
            [
                *size.values(),
                *(
                    abs(n * rec.absorbed[k])
                    for k, (n, _) in rec.absorbed_terms.items()
                    if k in rec.absorbed
                ),
            ],
            default=0.0,
        )
        rms = float(total.pow(2).mean().sqrt()) or 1.0
        small = []
        for term, part in parts.items():
            share = float(torch.as_tensor(part).pow(2).mean().sqrt()) / rms
            measure = {
                "share": share,
                "absolute": size[term],
                "largest": size[term] / (largest or 1.0),
            }
            if measure[spec.threshold_mode] < threshold:
                small.append(term)
        if small:
            dropped[call] = small
            rec.expression = SparseExpression(
                {t: v for t, v in rec.expression.terms.items() if t not in small},
                variables=rec.expression.variables,
            )
    return dropped
