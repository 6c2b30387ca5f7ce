"""airbench94-style classifier trials (Keras port) on a validation split."""
import argparse, json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
p = argparse.ArgumentParser()
p.add_argument("--name", required=True)
p.add_argument("--width", type=int, default=64)
p.add_argument("--epochs", type=float, default=40); p.add_argument("--batch", type=int, default=256)
p.add_argument("--lr", type=float, default=11.5); p.add_argument("--wd", type=float, default=0.0153)
p.add_argument("--momentum", type=float, default=0.85)
p.add_argument("--ls", type=float, default=0.2); p.add_argument("--translate", type=int, default=2)
p.add_argument("--cutout", type=int, default=0); p.add_argument("--cutmix", type=float, default=0.0)
p.add_argument("--ema", type=int, default=1); p.add_argument("--policy", default="mixed_bfloat16")
p.add_argument("--threads", type=int, default=1); p.add_argument("--val", type=int, default=1000)
p.add_argument("--seed", type=int, default=0); p.add_argument("--bias_scale", type=float, default=8.0)
p.add_argument("--use_test", action="store_true"); p.add_argument("--depth", type=int, default=2)
a = p.parse_args()
import numpy as np, tensorflow as tf, keras
from keras import layers
tf.config.threading.set_intra_op_parallelism_threads(a.threads); tf.config.threading.set_inter_op_parallelism_threads(a.threads)
from cifar_denoise_adv.core import data
keras.utils.set_random_seed(a.seed)
keras.mixed_precision.set_global_policy(a.policy)
D = os.environ["CIFAR10_DIR"]  # the real subset (see README, Data)
xtr, ytr = data.load_arrays("train", D); xte, yte = data.load_arrays("test", D)
rng = np.random.default_rng(1234); perm = rng.permutation(len(xtr))
vi, ti = perm[:a.val], perm[a.val:]
xv, yv = xtr[vi], ytr[vi]; xt, yt = xtr[ti], ytr[ti]
MEAN = np.array((0.4914, 0.4822, 0.4465), np.float32); STD = np.array((0.2470, 0.2435, 0.2616), np.float32)

class ScaledBias(layers.Layer):
    def __init__(self, scale, **kw):
        super().__init__(**kw); self.scale = scale
    def build(self, shape):
        self.b = self.add_weight(shape=(shape[-1],), initializer="zeros", name="b")
    def call(self, x):
        return x + tf.cast(self.scale * self.b, x.dtype)

def dirac_init(shape, dtype=None):
    k = keras.initializers.VarianceScaling(1/3, "fan_in", "uniform")(shape, dtype="float32").numpy()
    n = min(shape[2], shape[3])
    kk = k.copy()
    for i in range(n):
        kk[:, :, i, i] = 0; kk[1, 1, i, i] = 1.0
    return tf.constant(kk, dtype=dtype or "float32")

def bn(x):
    x = layers.BatchNormalization(momentum=0.6, epsilon=1e-12, center=False, scale=False)(x)
    return ScaledBias(a.bias_scale)(x)

def whitening_kernel(images, eps=5e-4):
    x = (images - MEAN) / STD
    patches = np.lib.stride_tricks.sliding_window_view(x, (2, 2), axis=(1, 2))  # N,31,31,3,2,2
    patches = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, 12).astype(np.float64)  # h,w,c order
    cov = patches.T @ patches / len(patches)
    ev, vec = np.linalg.eigh(cov)
    ev, vec = ev[::-1], vec[:, ::-1]
    filt = (vec / np.sqrt(ev + eps)).T.reshape(12, 2, 2, 3)  # out, h, w, c
    filt = np.concatenate([filt, -filt]).transpose(1, 2, 3, 0)  # h,w,c,out
    return filt.astype(np.float32)

def build():
    inp = keras.Input((32, 32, 3))
    x = layers.Normalization(mean=MEAN, variance=STD**2)(inp)
    wconv = layers.Conv2D(24, 2, padding="valid", use_bias=True, name="whiten")
    x = wconv(x); x = layers.Activation("gelu")(x)
    w = a.width
    for i, width in enumerate((w, 4 * w, 4 * w)):
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=dirac_init)(x)
        x = layers.MaxPooling2D(2)(x)
        x = bn(x); x = layers.Activation("gelu")(x)
        if a.depth == 3:  # airbench96: two more convs with a residual over them
            x0 = x
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=dirac_init)(x)
            x = bn(x); x = layers.Activation("gelu")(x)
            x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=dirac_init)(x)
            x = bn(x); x = layers.Add()([x, x0]); x = layers.Activation("gelu")(x)
        else:
            for _ in range(a.depth - 1):
                x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=dirac_init)(x)
                x = bn(x); x = layers.Activation("gelu")(x)
    x = layers.MaxPooling2D(3)(x); x = layers.Flatten()(x)
    x = layers.Dense(10, use_bias=False)(x)
    out = layers.Rescaling(1 / 9, dtype="float32")(x)
    m = keras.Model(inp, out)
    wconv.kernel.assign(whitening_kernel(xt[:5000]))
    wconv.kernel.trainable = False
    return m, wconv

def augment(img, seed):
    s = tf.random.experimental.stateless_split(seed, 3)
    if a.translate:
        img = tf.pad(img, [[a.translate]*2, [a.translate]*2, [0, 0]], "REFLECT")
        img = tf.image.stateless_random_crop(img, (32, 32, 3), seed=s[0])
    img = tf.image.stateless_random_flip_left_right(img, seed=s[1])
    if a.cutout:
        c = tf.random.stateless_uniform([2], s[2], 0, 32, tf.int32)
        rows = tf.abs(tf.range(32) - c[0]) < (a.cutout + 1) // 2; cols = tf.abs(tf.range(32) - c[1]) < (a.cutout + 1) // 2
        img = tf.where(tf.logical_and(rows[:, None], cols[None, :])[:, :, None], 0.5, img)
    return img
def mix(x, y):
    y = tf.one_hot(y, 10)
    if not a.cutmix: return x, y
    b = tf.shape(x)[0]; idx = tf.random.shuffle(tf.range(b))
    lam = tf.random.uniform([], 0, 1); r = tf.sqrt(1 - lam); h = tf.cast(32 * r, tf.int32)
    cy = tf.random.uniform([], 0, 32, tf.int32); cx = tf.random.uniform([], 0, 32, tf.int32)
    y0 = tf.clip_by_value(cy - h // 2, 0, 32); y1 = tf.clip_by_value(cy + h // 2, 0, 32)
    x0 = tf.clip_by_value(cx - h // 2, 0, 32); x1 = tf.clip_by_value(cx + h // 2, 0, 32)
    rows = (tf.range(32) >= y0) & (tf.range(32) < y1); cols = (tf.range(32) >= x0) & (tf.range(32) < x1)
    m = tf.cast(rows[:, None] & cols[None, :], x.dtype)[None, :, :, None] * tf.cast(tf.random.uniform([]) < a.cutmix, x.dtype)
    lamr = 1 - tf.reduce_mean(m)
    return x * (1 - m) + tf.gather(x, idx) * m, lamr * y + (1 - lamr) * tf.gather(y, idx)
ds = tf.data.Dataset.from_tensor_slices((xt, yt)).cache().shuffle(10000, seed=a.seed)
seeds = tf.data.Dataset.random(seed=a.seed, rerandomize_each_iteration=True).batch(2)
ds = tf.data.Dataset.zip(ds, seeds).map(lambda xy, s: (augment(xy[0], s), xy[1]), num_parallel_calls=tf.data.AUTOTUNE)
ds = ds.batch(a.batch, drop_remainder=True).map(mix).prefetch(4)
steps = len(xt) // a.batch
total = int(a.epochs * steps)
kilo = 1024 * (1 + 1 / (1 - a.momentum))
lr = a.lr / kilo * a.batch   # mean loss
wd_step = a.wd * a.batch / kilo
class Triangle(keras.optimizers.schedules.LearningRateSchedule):
    def __call__(self, step):
        step = tf.cast(step, tf.float32); peak = 0.23 * total
        f = tf.where(step < peak, 0.2 + (1 - 0.2) * step / peak, 1 + (0.07 - 1) * (step - peak) / (total - peak))
        return lr * tf.maximum(f, 0.0)
opt = keras.optimizers.SGD(Triangle(), momentum=a.momentum, nesterov=True, weight_decay=wd_step / lr)
model, wconv = build()
model.compile(opt, loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=a.ls), metrics=["accuracy"])
class EMA(keras.callbacks.Callback):
    def __init__(self): super().__init__(); self.state = None; self.step = 0
    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if not a.ema or self.step < 3 * steps or self.step % 5: return
        ws = [w.numpy() for w in self.model.weights]
        if self.state is None: self.state = ws; return
        rho = 0.95 ** 5 * (self.step / total) ** 3
        self.state = [rho * e + (1 - rho) * w for e, w in zip(self.state, ws)]
        for v, e in zip(self.model.weights, self.state): v.assign(e)
def tta_logits(m, x, level):
    f = lambda v: m.predict(v, batch_size=500, verbose=0)
    mirror = lambda v: 0.5 * f(v) + 0.5 * f(v[:, :, ::-1])
    if level == 0: return f(x)
    if level == 1: return mirror(x)
    pad = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    return 0.5 * mirror(x) + 0.25 * (mirror(pad[:, :32, :32]) + mirror(pad[:, 2:, 2:]))
class Log(keras.callbacks.Callback):
    def on_epoch_end(self, ep, logs=None):
        if (ep + 1) % 5 == 0:
            acc = float(np.mean(self.model.predict(xv, batch_size=500, verbose=0).argmax(1) == yv))
            print(f"{a.name} ep {ep+1} loss {logs['loss']:.3f} val {acc:.4f} t {time.time()-t0:.0f}", flush=True)
t0 = time.time()
import math
model.fit(ds.repeat(), steps_per_epoch=steps, epochs=math.ceil(a.epochs), verbose=0, callbacks=[EMA(), Log()])
tt = time.time() - t0
res = {"name": a.name, "args": vars(a), "train_s": tt, "imgs_per_s": total * a.batch / tt, "params": model.count_params()}
for lvl in (0, 1, 2):
    res[f"val_tta{lvl}"] = float(np.mean(tta_logits(model, xv, lvl).argmax(1) == yv))
res["train_acc_clean"] = float(np.mean(model.predict(xt, batch_size=500, verbose=0).argmax(1) == yt))
if a.use_test:
    for lvl in (0, 1, 2):
        res[f"test_tta{lvl}"] = float(np.mean(tta_logits(model, xte, lvl).argmax(1) == yte))
print("RESULT", json.dumps(res), flush=True)
with open("trials.jsonl", "a") as f: f.write(json.dumps(res) + "\n")
