"""Integer codes shared by the rate-law tables, the kernels and the Python API."""

# Rate-law kinds (column ``law_kind`` of the network tables).
MASS_ACTION = 0  #: k * prod_i C(x_i, nu_i)
HILL = 1  #: vmax * P^n / (K^n + P^n)
HILL_REPRESSION = 2  #: vmax * K^n / (K^n + P^n)
MICHAELIS_MENTEN = 3  #: vmax * S / (Km + S)
NEURAL = 4  #: k * f(b + sum_i w_i x_i)
EXPRESSION = 5  #: code-generated ``expression_propensity(j, x, theta)`` (e.g. SBML kinetic laws)

#: 1/o! for reactant orders o = 0..12 (mass action: C(n, o) = n (n-1) ... (n-o+1) * (1/o!))
INV_FACTORIAL = (1.0, 1.0, 0.5, 1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320,
                 1.0 / 362880, 1.0 / 3628800, 1.0 / 39916800, 1.0 / 479001600)
MAX_ORDER = len(INV_FACTORIAL) - 1

# Nonlinearities of the neural law.
SIGMOID = 0
SOFTPLUS = 1
EXP = 2

# Per-trajectory status written by the kernels.
OK = 0  #: reached the end of t_eval
MAX_STEPS = 1  #: more than max_steps events were needed
BAD_PROPENSITY = 2  #: a propensity was negative, NaN or infinite
NEGATIVE_POPULATION = 3  #: firing a reaction would drive a population below zero
POPULATION_OVERFLOW = 4  #: a population exceeded the output integer type
STOPPED = 5  #: reached t_stop (a scheduled interruption, e.g. a time-triggered event)
TRIGGERED = 6  #: event_trigger(x, t, theta) became true after an event
