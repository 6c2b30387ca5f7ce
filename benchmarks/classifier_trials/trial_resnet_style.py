"""Classifier recipe trials on a validation split of the training images."""
import argparse, json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
p = argparse.ArgumentParser()
p.add_argument("--name", required=True)
p.add_argument("--arch", default="air"); p.add_argument("--widths", default="64,256,256")
p.add_argument("--act", default="gelu")
p.add_argument("--epochs", type=int, default=40); p.add_argument("--batch", type=int, default=128)
p.add_argument("--lr", type=float, default=0.2); p.add_argument("--wd", type=float, default=5e-4)
p.add_argument("--momentum", type=float, default=0.9)
p.add_argument("--warmup", type=float, default=2)
p.add_argument("--ls", type=float, default=0.2); p.add_argument("--pad", type=int, default=4)
p.add_argument("--cutout", type=int, default=0); p.add_argument("--cutmix", type=float, default=0.0)
p.add_argument("--mixup", type=float, default=0.0)
p.add_argument("--ema", type=float, default=0.0); p.add_argument("--policy", default="mixed_bfloat16")
p.add_argument("--threads", type=int, default=1); p.add_argument("--val", type=int, default=1000)
p.add_argument("--seed", type=int, default=0); p.add_argument("--bn_momentum", type=float, default=0.9)
p.add_argument("--use_test", action="store_true")
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
MEAN = (0.4914, 0.4822, 0.4465); STD = (0.2470, 0.2435, 0.2616)
bnm = a.bn_momentum
def build():
    inp = keras.Input((32,32,3)); x = layers.Normalization(mean=MEAN, variance=[s*s for s in STD])(inp)
    ws = [int(w) for w in a.widths.split(",")]
    if a.arch == "air":
        x = layers.Conv2D(24, 2, padding="valid")(x); x = layers.Activation(a.act)(x)
        for w in ws:
            x = layers.Conv2D(w, 3, padding="same", use_bias=False)(x); x = layers.MaxPooling2D()(x)
            x = layers.BatchNormalization(momentum=bnm)(x); x = layers.Activation(a.act)(x)
            x = layers.Conv2D(w, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=bnm)(x); x = layers.Activation(a.act)(x)
        x = layers.GlobalMaxPooling2D()(x)
    elif a.arch == "air_res":
        x = layers.Conv2D(24, 2, padding="valid")(x); x = layers.Activation(a.act)(x)
        for w in ws:
            x = layers.Conv2D(w, 3, padding="same", use_bias=False)(x); x = layers.MaxPooling2D()(x)
            x = layers.BatchNormalization(momentum=bnm)(x); x = layers.Activation(a.act)(x)
            y = layers.Conv2D(w, 3, padding="same", use_bias=False)(x)
            y = layers.BatchNormalization(momentum=bnm)(y); y = layers.Activation(a.act)(y)
            y = layers.Conv2D(w, 3, padding="same", use_bias=False)(y)
            y = layers.BatchNormalization(momentum=bnm)(y); y = layers.Activation(a.act)(y)
            x = layers.Add()([x, y])
        x = layers.GlobalMaxPooling2D()(x)
    else:  # resnet9
        def cbr(x, f):
            x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
            x = layers.BatchNormalization(momentum=bnm)(x); return layers.Activation(a.act)(x)
        w = ws[0]; x = cbr(x, w)
        for fac, res in ((2,True),(4,False),(8,True)):
            x = cbr(x, w*fac); x = layers.MaxPooling2D()(x)
            if res:
                y = cbr(cbr(x, w*fac), w*fac); x = layers.Add()([x, y])
        x = layers.GlobalMaxPooling2D()(x)
    out = layers.Dense(10, dtype="float32")(x)
    return keras.Model(inp, out)
def augment(img, seed):
    s = tf.random.experimental.stateless_split(seed, 3)
    if a.pad:
        img = tf.pad(img, [[a.pad,a.pad],[a.pad,a.pad],[0,0]], "REFLECT")
        img = tf.image.stateless_random_crop(img, (32,32,3), seed=s[0])
    img = tf.image.stateless_random_flip_left_right(img, seed=s[1])
    if a.cutout:
        c = tf.random.stateless_uniform([2], s[2], 0, 32, tf.int32)
        rows = tf.abs(tf.range(32)-c[0]) < (a.cutout+1)//2; cols = tf.abs(tf.range(32)-c[1]) < (a.cutout+1)//2
        img = tf.where(tf.logical_and(rows[:,None], cols[None,:])[:,:,None], 0.5, img)
    return img
def mix(x, y):
    y = tf.one_hot(y, 10)
    b = tf.shape(x)[0]; idx = tf.random.shuffle(tf.range(b))
    if a.cutmix:
        lam = tf.random.uniform([], 0, 1)  # Beta(1,1)
        r = tf.sqrt(1 - lam); h = tf.cast(32*r, tf.int32)
        cy = tf.random.uniform([], 0, 32, tf.int32); cx = tf.random.uniform([], 0, 32, tf.int32)
        y0 = tf.clip_by_value(cy - h//2, 0, 32); y1 = tf.clip_by_value(cy + h//2, 0, 32)
        x0 = tf.clip_by_value(cx - h//2, 0, 32); x1 = tf.clip_by_value(cx + h//2, 0, 32)
        rows = (tf.range(32) >= y0) & (tf.range(32) < y1); cols = (tf.range(32) >= x0) & (tf.range(32) < x1)
        m = tf.cast(rows[:,None] & cols[None,:], x.dtype)[None,:,:,None]
        use = tf.random.uniform([]) < a.cutmix
        m = m * tf.cast(use, x.dtype)
        lamr = 1 - tf.reduce_mean(m)
        x = x * (1-m) + tf.gather(x, idx) * m
        y = lamr * y + (1-lamr) * tf.gather(y, idx)
    elif a.mixup:
        lam = tf.compat.v1.distributions.Beta(a.mixup, a.mixup).sample() if False else tf.random.uniform([], 0, 1)
        x = lam*x + (1-lam)*tf.gather(x, idx); y = lam*y + (1-lam)*tf.gather(y, idx)
    return x, y
ds = tf.data.Dataset.from_tensor_slices((xt, yt)).cache().shuffle(10000, seed=a.seed)
seeds = tf.data.Dataset.random(seed=a.seed, rerandomize_each_iteration=True).batch(2)
ds = tf.data.Dataset.zip(ds, seeds).map(lambda xy, s: (augment(xy[0], s), xy[1]), num_parallel_calls=tf.data.AUTOTUNE)
ds = ds.batch(a.batch, drop_remainder=True)
ds = ds.map(mix) if (a.cutmix or a.mixup) else ds.map(lambda x, y: (x, tf.one_hot(y, 10)))
ds = ds.prefetch(4)
steps = len(xt)//a.batch
sched = keras.optimizers.schedules.CosineDecay(0.0, a.epochs*steps - int(a.warmup*steps), warmup_target=a.lr, warmup_steps=int(a.warmup*steps))
opt = keras.optimizers.SGD(sched, momentum=a.momentum, nesterov=True, weight_decay=a.wd, use_ema=a.ema > 0, ema_momentum=a.ema or 0.99)
model = build()
model.compile(opt, loss=keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=a.ls), metrics=["accuracy"])
def tta_logits(m, x, level):
    views = [x]
    if level >= 1: views.append(x[:, :, ::-1])
    out = sum(m.predict(v, batch_size=500, verbose=0) for v in views) / len(views)
    if level >= 2:
        pad = np.pad(x, ((0,0),(1,1),(1,1),(0,0)), mode="reflect")
        sh = [pad[:, :32, :32], pad[:, 2:, 2:]]
        t = 0
        for v in sh: t = t + m.predict(v, batch_size=500, verbose=0) + m.predict(v[:, :, ::-1], batch_size=500, verbose=0)
        out = 0.5*out + 0.5*t/4
    return out
class Log(keras.callbacks.Callback):
    def on_epoch_end(self, ep, logs=None):
        if (ep+1) % 5 == 0 or ep+1 == a.epochs:
            acc = float(np.mean(self.model.predict(xv, batch_size=500, verbose=0).argmax(1) == yv))
            print(f"{a.name} ep {ep+1} loss {logs['loss']:.3f} trainacc {logs['accuracy']:.3f} val {acc:.4f} t {time.time()-t0:.0f}", flush=True)
t0 = time.time()
model.fit(ds, epochs=a.epochs, verbose=0, callbacks=[Log()])
tt = time.time()-t0
res = {"name": a.name, "args": vars(a), "train_s": tt, "imgs_per_s": a.epochs*steps*a.batch/tt}
for lvl in (0,1,2):
    res[f"val_tta{lvl}"] = float(np.mean(tta_logits(model, xv, lvl).argmax(1) == yv))
res["train_acc_clean"] = float(np.mean(model.predict(xt, batch_size=500, verbose=0).argmax(1) == yt))
if a.use_test:
    for lvl in (0,1,2):
        res[f"test_tta{lvl}"] = float(np.mean(tta_logits(model, xte, lvl).argmax(1) == yte))
print("RESULT", json.dumps(res), flush=True)
with open("trials.jsonl", "a") as f: f.write(json.dumps(res)+"\n")
