#!/usr/bin/env python3
"""Probes a running server with malformed requests and reports any answer that is a 5xx, a
dropped connection or slower than 10 s (standard library only).

    server --listen 127.0.0.1:18080 &      # on the default artifact
    python3 server/loadtest/probe_bad_input.py [--url http://127.0.0.1:18080] [--data ../shared/data]

Every POST route gets a valid single-asset body built from the shared candles (BTCUSDT, ETHUSDT:
the last 889 hours) and then that body with one thing wrong: each candle field at 0, -1, huge or
tiny values, duplicate, unsorted, misaligned or far-off times, wrong types, missing or extra
fields; the settings out of range; both request shapes or neither; raw bodies that are not
JSON. The GET routes get bad paths and query strings. A client mistake must be a 4xx, never a
5xx (README "Errors"). Exits 1 when anything was bad.
"""
import argparse
import json, gzip, csv, copy, urllib.error, urllib.request, time, sys

ARGS = argparse.ArgumentParser(description=__doc__.splitlines()[1])
ARGS.add_argument('--url', default='http://127.0.0.1:18080')
ARGS.add_argument('--data', default='../shared/data')
OPTS = ARGS.parse_args()
URL = OPTS.url
SENT = 0
def load(asset, n=889):
    rows=list(csv.reader(gzip.open(f'{OPTS.data}/binance-spot-1h/{asset}.csv.gz','rt')))[1:]
    out=[]
    for r in rows[-n:]:
        out.append(dict(open_time=int(r[0]),open=float(r[1]),high=float(r[2]),low=float(r[3]),close=float(r[4]),volume=float(r[5]),quote_volume=float(r[6])))
    return out
C=load('BTCUSDT'); E=load('ETHUSDT')
def req(method, path, body=None, raw=None):
    global SENT
    SENT += 1
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    r=urllib.request.Request(URL+path, data=data, method=method, headers={'content-type':'application/json'})
    t=time.time()
    try:
        with urllib.request.urlopen(r, timeout=30) as resp:
            return resp.status, resp.read()[:300], time.time()-t
    except urllib.error.HTTPError as e:
        return e.code, e.read()[:300], time.time()-t
    except Exception as e:
        return -1, repr(e).encode(), time.time()-t
bad=[]
def check(name, method, path, body=None, raw=None, ok=(200,)):
    s,b,dt=req(method,path,body,raw)
    if s>=500 or s<0 or dt>10:
        bad.append((name,path,s,b,dt)); print('BAD',name,path,s,b[:200],round(dt,2))
    return s,b
def mut_candles(c):
    yield 'empty', []
    yield 'one', c[:1]
    yield 'two', c[:2]
    for f in ['open','high','low','close','volume','quote_volume']:
        for v in [0, -1, 1e308, 1e-308, 5e-324, 1.7976931348623157e308, 1e300, 1e-300]:
            cc=copy.deepcopy(c); cc[-1][f]=v; 
            if f in ('high',) and v>1e10: cc[-1]['high']=v
            yield f'{f}={v}', cc
            cc=copy.deepcopy(c)
            for x in cc: x[f]=v
            yield f'all {f}={v}', cc
    # all prices huge consistent
    for v in [1e300, 1e-300, 1e-12, 1e15]:
        cc=copy.deepcopy(c)
        for x in cc: x['open']=x['high']=x['low']=x['close']=v
        yield f'flat {v}', cc
        cc=copy.deepcopy(c)
        for i,x in enumerate(cc):
            m=v*(1+0.01*(i%7)); x['open']=x['close']=m; x['low']=m*0.99; x['high']=m*1.01
        yield f'scaled {v}', cc
    cc=copy.deepcopy(c); cc[5]['open_time']=cc[4]['open_time']; yield 'dup time', cc
    cc=copy.deepcopy(c); cc.reverse(); yield 'reversed', cc
    cc=copy.deepcopy(c); cc[-1]['open_time']+=1; yield 'misaligned', cc
    cc=copy.deepcopy(c); 
    for x in cc[400:]: x['open_time']+=3600_000*24*365
    yield 'year gap', cc
    cc=copy.deepcopy(c)
    for x in cc[1:]: x['open_time']+=3600_000*24*365*50
    yield 'fifty year gap', cc
    for t in [0, -3600000, 2**62, 2**63-1, 253402300800000]:
        cc=copy.deepcopy(c); base=t
        for i,x in enumerate(cc): x['open_time']=base+i*3600000 if base< 2**62 else base
        yield f'time {t}', cc
    cc=copy.deepcopy(c); cc[3]['open_time']=1.5; yield 'float time', cc
    cc=copy.deepcopy(c); cc[3]['open']='1'; yield 'string open', cc
    cc=copy.deepcopy(c); cc[3]['open']=None; yield 'null open', cc
    cc=copy.deepcopy(c); del cc[3]['volume']; yield 'missing volume', cc
    cc=copy.deepcopy(c); cc[3]['extra']=1; yield 'extra field', cc
    cc=copy.deepcopy(c)
    for x in cc: x['volume']=0; x['quote_volume']=0
    yield 'zero volume', cc
    cc=copy.deepcopy(c)
    for x in cc: x['high']=x['low']=x['open']=x['close']=100.0
    yield 'constant', cc
    yield 'long', c*1 + [dict(x, open_time=x['open_time']+len(c)*3600000) for x in c]
routes_single = [
  ('POST','/v1/forecast/volatility', lambda c: {'asset':'BTCUSDT','candles':c}),
  ('POST','/v1/forecast/liquidity', lambda c: {'asset':'BTCUSDT','candles':c}),
  ('POST','/v1/risk/parameters', lambda c: {'asset':'BTCUSDT','candles':c}),
  ('POST','/v1/risk/updates', lambda c: {'asset':'BTCUSDT','candles':c}),
  ('POST','/v1/anomaly/scan', lambda c: {'asset':'BTCUSDT','candles':c}),
  ('POST','/v1/risk/stress', lambda c: {'asset':'BTCUSDT','candles':c,'positions':[{'collateral':1,'debt':10000}]}),
]
for m,p,mk in routes_single:
    s,b=check('valid',m,p,mk(C))
    print(p,'valid ->',s)
    for name,cc in mut_candles(C):
        check(name,m,p,mk(cc))
# settings
sets = {'alpha':[0,0.5,1,1.5,-1,float('nan') ,1e308,0.99999999], 'tau_hours':[0,-1,1e9,0.5,10**12], 'tau_user_hours':[0,-5,1e12],
        'bonus':[-1,1,0.999999,1e308], 'bonus_margin':[-1,1,1e308], 'sale_size_usd':[0,-1,1e308,1e-308], 'max_step':[0,-1,1e308,2],
        'previous_liquidation_threshold':[0,-1,2,1e308], 'previous_max_ltv':[0,-1,2,1e308], 'horizons':[[],[0],[1],[5],[10**6],[-1],[4,4],[168]*1000]}
for p in ['/v1/risk/parameters','/v1/risk/updates','/v1/forecast/volatility','/v1/forecast/liquidity']:
    for k,vs in sets.items():
        for v in vs:
            body={'asset':'BTCUSDT','candles':C,k:v}
            raw=json.dumps(body).replace('NaN','NaN').encode()
            check(f'{k}={v}','POST',p,raw=raw)
# stress specifics
for k,v in [('paths',0),('paths',10**9),('paths',-1),('horizon_hours',0),('horizon_hours',10**6),('seed',-1),('seed',2**64),('df',0),('df',-1),('df',1e308),
            ('positions',[]),('positions',[{'collateral':1e308,'debt':1e308}]),('positions',[{'collateral':0,'debt':0}]),('positions',[{'collateral':1,'debt':1}]*200000),
            ('scenarios',[]),('scenarios',[{'kind':'volatility_shock','k':1e-308}]),('scenarios',[{'kind':'price_drop','pct':100}]),('scenarios',[{'kind':'price_drop','pct':99.9999}]),
            ('scenarios',[{'kind':'liquidity_drain','k':100}]),('scenarios',[{'kind':'volatility_shock','k':100}]*50),('default_liquidation_threshold',0),('default_liquidation_threshold',1e-300)]:
    body={'asset':'BTCUSDT','candles':C,'positions':[{'collateral':1,'debt':10000}],k:v}
    check(f'stress {k}={str(v)[:40]}','POST','/v1/risk/stress',body)
# batch shapes
for p in ['/v1/forecast/volatility','/v1/risk/parameters','/v1/anomaly/scan']:
    check('both shapes','POST',p,{'asset':'BTCUSDT','candles':C,'items':[{'asset':'ETHUSDT','candles':E}]})
    check('empty items','POST',p,{'items':[]})
    check('neither','POST',p,{})
    check('dup assets','POST',p,{'items':[{'asset':'X','candles':C},{'asset':'X','candles':C}]})
    check('many items','POST',p,{'items':[{'asset':f'A{i}','candles':C} for i in range(70)]})
    check('asset weird','POST',p,{'asset':'../../etc/passwd\u0000'+'x'*10000,'candles':C})
    for raw in [b'', b'{', b'null', b'[]', b'"x"', b'{"asset":1}', b'\xff\xfe', b'{"asset":"BTCUSDT","candles":[' + b'1,'*100000 + b'1]}']:
        check(f'raw {raw[:20]}','POST',p,raw=raw)
# GET routes params
for q in ['', '?from=abc', '?from=0&to=1', '?from=9999999999999999999', '?to=-1', '?limit=0', '?limit=-1', '?limit=99999999999', '?all=maybe', '?from=2021-01-01&to=2020-01-01']:
    for p in ['/v1/assets/BTCUSDT/anomalies','/v1/assets/BTCUSDT/candles','/v1/decisions','/v1/assets/NOPE/anomalies','/v1/assets/%00/candles', '/v1/assets/'+'x'*5000+'/candles']:
        check('get'+q,'GET',p+q)
for q in ['?alpha=nan','?alpha=inf','?alpha=1e999','?tau_hours=-1','?horizons=abc','?horizons=4,4,4','?horizons=','?sale_size_usd=-5','?max_step=nan']:
    for p in ['/v1/assets/BTCUSDT/risk','/v1/assets/BTCUSDT/risk/updates','/v1/assets/BTCUSDT/forecast/volatility','/v1/assets/BTCUSDT/forecast/liquidity']:
        check('get'+q,'GET',p+q)
for p in ['/v1/decisions/abc','/v1/decisions/999999999999999999999','/v1/decisions/-1','/v1/model/validation?asset=%ff']:
    check('get','GET',p)
check('replay','POST','/v1/decisions/abc/replay')
check('replay','POST','/v1/decisions/1/replay')
print(f'{SENT} requests, {len(bad)} bad (5xx, dropped, or over 10 s)')
sys.exit(1 if bad else 0)
