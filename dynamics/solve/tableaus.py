"""Coefficients of the engine's two Runge-Kutta-type methods, as data.

``dopri5``: the explicit Dormand-Prince 5(4) pair (FSAL); ``rodas4``: the L-stable, stiffly
accurate Rosenbrock 4(3) method RODAS of Hairer & Wanner. The step functions that use them are
in :mod:`dynamics.solve.steps`.
"""

# Dormand & Prince (1980) 5(4), as in Hairer, Norsett & Wanner, "Solving ODEs I", Table 5.2.
DP_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
DP_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
# error = (5th order - embedded 4th order) solution, per stage
DP_E = (
    71 / 57600,
    0.0,
    -71 / 16695,
    71 / 1920,
    -17253 / 339200,
    22 / 525,
    -1 / 40,
)

# RODAS (order 4, embedded 3) of Hairer & Wanner, "Solving ODEs II", section IV.7, in the
# form that needs no Jacobian-vector products:  W = I/(h*gamma) - J,
#   Y_i = y + sum_j A_ij K_j,   W K_i = f(Y_i) + sum_j (C_ij / h) K_j,
#   y_new = y + sum_j M_j K_j = Y_6 + K_6,   error = K_6  (stiffly accurate).
RO_GAMMA = 0.25
RO_A = (
    (),
    (1.544,),
    (0.9466785280815826, 0.2557011698983284),
    (3.314825187068521, 2.896124015972201, 0.9986419139977817),
    (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895),
    (1.221224509226641, 6.019134481288629, 12.53708332932087, -0.687886036105895, 1.0),
)
RO_C = (
    (),
    (-5.6688,),
    (-2.430093356833875, -0.2063599157091915),
    (-0.1073529058151375, -9.594562251023355, -20.47028614809616),
    (7.496443313967647, -10.24680431464352, -33.99990352819905, 11.7089089320616),
    (8.083246795921522, -7.981132988064893, -31.52159432874371, 16.31930543123136,
     -6.058818238834054),
)

ORDER = {"dopri5": 5, "rodas4": 4}  # q+1 in the step-size exponent 1/(q+1): lower order + 1
