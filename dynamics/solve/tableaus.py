"""Coefficients of the engine's Runge-Kutta-type methods, as data.

``dopri5``: the explicit Dormand-Prince 5(4) pair (FSAL); ``rodas4``: the L-stable, stiffly
accurate Rosenbrock 4(3) method RODAS of Hairer & Wanner; ``rodas5p``: Steinebach's L-stable,
stiffly accurate Rosenbrock 5(4) method Rodas5P. The step functions that use them are in
:mod:`dynamics.solve.steps`.
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


# Rodas5P of G. Steinebach, "Construction of Rosenbrock-Wanner method Rodas5P and numerical
# benchmarks within the Julia Differential Equations package", BIT Numerical Mathematics 63, 27
# (2023): 8 stages, order 5 with an embedded order-4 solution, L-stable and stiffly accurate,
# in the same Jacobian-free form as RODAS above (W = I/(h*gamma) - J). The paper gives the
# coefficients a_ij (stages 2-6) and C_ij; as in Di Marzo's RODAS5 structure the last two stage
# points are the previous one plus its stage (Y_7 = Y_6 + K_6, Y_8 = Y_7 + K_7), and
#   y_new = Y_8 + K_8,  embedded (order 4) = Y_8,  error = K_8.
R5_GAMMA = 0.21193756319429014
_R5_A6 = (-7.502846399306121, 2.561846144803919, -11.627539656261098, -0.18268767659942256,
          0.030198172008377946)
R5_A = (
    (),
    (3.0,),
    (2.849394379747939, 0.45842242204463923),
    (-6.954028509809101, 2.489845061869568, -10.358996098473584),
    (2.8029986275628964, 0.5072464736228206, -0.3988312541770524, -0.04721187230404641),
    _R5_A6,
    _R5_A6 + (1.0,),
    _R5_A6 + (1.0, 1.0),
)
R5_C = (
    (),
    (-14.155112264123755,),
    (-17.97296035885952, -2.859693295451294),
    (147.12150275711716, -1.41221402718213, 71.68940251302358),
    (165.43517024871676, -0.4592823456491126, 42.90938336958603, -5.961986721573306),
    (24.854864614690072, -3.0009227002832186, 47.4931110020768, 5.5814197821558125,
     -0.6610691825249471),
    (30.91273214028599, -3.1208243349937974, 77.79954646070892, 34.28646028294783,
     -19.097331116725623, -28.087943162872662),
    (37.80277123390563, -3.2571969029072276, 112.26918849496327, 66.9347231244047,
     -40.06618937091002, -54.66780262877968, -9.48861652309627),
)

#: the Rosenbrock methods as ``(gamma, A, C)``: stage ``i`` evaluates the field at
#: ``y + sum_j A[i][j] K_j``; ``y_new = y + sum_j A[-1][j] K_j + K_last`` and ``error = K_last``
ROSENBROCK = {"rodas4": (RO_GAMMA, RO_A, RO_C), "rodas5p": (R5_GAMMA, R5_A, R5_C)}

ORDER = {"dopri5": 5, "rodas4": 4, "rodas5p": 5}  # q+1 in the step-size exponent 1/(q+1): lower order + 1
