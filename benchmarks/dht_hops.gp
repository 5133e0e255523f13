# Lookup hops against N, from dht_hops.csv (written by dht_routing):
#   gnuplot benchmarks/dht_hops.gp   (in the directory holding dht_hops.csv) -> dht_hops.png
set terminal pngcairo size 900,560
set output 'dht_hops.png'
set datafile separator ','
set logscale x 2
set key top left
set xlabel 'nodes N'
set ylabel 'hops to the owner'
set title 'DHT lookup hops: measured mean (points), 99th percentile (dashed), theory (lines)'
plot \
  'dht_hops.csv' using ($2):(strcol(1) eq 'chord' ? $3 : 1/0) with linespoints pt 7 lc 1 title 'chord mean', \
  ''             using ($2):(strcol(1) eq 'chord' ? $5 : 1/0) with lines lc 1 lw 2 title '½ log2 N', \
  ''             using ($2):(strcol(1) eq 'chord' ? $4 : 1/0) with lines dt 2 lc 1 notitle, \
  ''             using ($2):(strcol(1) eq 'pastry' ? $3 : 1/0) with linespoints pt 5 lc 2 title 'pastry mean', \
  ''             using ($2):(strcol(1) eq 'pastry' ? $5 : 1/0) with lines lc 2 lw 2 title 'log16 N', \
  ''             using ($2):(strcol(1) eq 'pastry' ? $4 : 1/0) with lines dt 2 lc 2 notitle, \
  ''             using ($2):(strcol(1) eq 'kademlia' ? $3 : 1/0) with linespoints pt 9 lc 3 title 'kademlia mean', \
  ''             using ($2):(strcol(1) eq 'kademlia' ? $5 : 1/0) with lines lc 3 lw 2 title 'log_{40} N (k = 20)', \
  ''             using ($2):(strcol(1) eq 'kademlia' ? $4 : 1/0) with lines dt 2 lc 3 notitle
